"""moto's server, with two fixes so that benchmarks measure nylas-sync rather than moto.

moto 5's SendMessage reads the queue's ContentBasedDeduplication through `Queue.attributes`,
which recomputes every attribute, the approximate message counts included: a walk over every
message in the queue, for every message sent. Enqueueing n jobs then costs moto O(n^2) (at
100,000 grants, hours). The fix reads the one attribute; behaviour is unchanged (counts are
still computed by GetQueueAttributes). If moto's code no longer has the line, it runs as is.

ReceiveMessage has the same defect twice over: for each message it returns it checks the
message's retention through `get_queue_attributes`, which computes every attribute of the queue
(twice). Draining a queue of 2,400 messages ten at a time then took over a second per call,
long enough that messages taken at the start became visible again (300 s) before the end: the
hostile benchmark's drain never finished. The fix reads the queue's retention period directly.

moto serves through werkzeug's development server, which closes the connection after every
answer ("Connection: close": its handler cannot drain a request body before the next request
line). AWS keeps HTTP/1.1 connections open, and an SDK client reuses them, so under werkzeug
every AWS call of a benchmarked function also paid a TCP connect and teardown that it does not
pay on AWS (a quarter of the ingest's CPU per 2 KiB invocation, by a perf profile). The
benchmarks serve moto's application with waitress instead (a production WSGI server with
keep-alive; `pip install waitress`), which answers the same requests the same way.

The server also keeps the total time moto's application has spent serving requests (wall time
from the request handed to it to its answer's last byte), read at `GET /__bench/service-time`
(nanoseconds): a benchmark that times a function end to end can take out the time spent inside
moto, which is AWS's time in production, not the function's.

Used by tests/bench/run through tests/with-moto (MOTO_SERVER_SCRIPT); the tests use plain moto.
"""
import inspect
import sys
import textwrap
import threading
import time

from moto.server import main
from moto.sqs import models

SLOW = 'queue.attributes.get("ContentBasedDeduplication") == "true"'
FAST = 'str(getattr(queue, "content_based_deduplication", False)).lower() == "true"'

source = textwrap.dedent(inspect.getsource(models.SQSBackend.send_message))
if SLOW in source:
    namespace = {}
    exec(compile(source.replace(SLOW, FAST), models.__file__, "exec"), vars(models), namespace)
    models.SQSBackend.send_message = namespace["send_message"]
    print("moto-server: SendMessage reads ContentBasedDeduplication directly", file=sys.stderr)
else:
    print("moto-server: moto changed; running it unpatched", file=sys.stderr)

RETENTION = 'retention_period = self.get_queue_attributes(\n            queue_name, ["MessageRetentionPeriod"]\n        )["MessageRetentionPeriod"]'
source = textwrap.dedent(inspect.getsource(models.SQSBackend.is_message_valid_based_on_retention_period))
if " ".join(RETENTION.split()) in " ".join(source.split()):

    def is_message_valid_based_on_retention_period(self, queue_name, message):
        retention_period = int(self.get_queue(queue_name).message_retention_period)
        return retention_period + message.sent_timestamp / 1000 > models.unix_time()

    models.SQSBackend.is_message_valid_based_on_retention_period = is_message_valid_based_on_retention_period
    print("moto-server: ReceiveMessage reads MessageRetentionPeriod directly", file=sys.stderr)
else:
    print("moto-server: moto's retention check changed; running it unpatched", file=sys.stderr)


SERVICE_TIME_PATH = "/__bench/service-time"


class ServiceTime:
    """WSGI middleware: the total wall time `app` spends on requests, served at SERVICE_TIME_PATH."""

    def __init__(self, app):
        self.app = app
        self.lock = threading.Lock()
        self.total_ns = 0

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO") == SERVICE_TIME_PATH:
            with self.lock:
                body = str(self.total_ns).encode()
            start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
            return [body]
        started = time.perf_counter_ns()
        answer = None
        try:
            # Drained here, so the time includes producing the whole answer.
            answer = self.app(environ, start_response)
            return [b"".join(answer)]
        finally:
            if hasattr(answer, "close"):  # WSGI: the server must close what the app returned
                answer.close()
            with self.lock:
                self.total_ns += time.perf_counter_ns() - started


def serve(argv):
    """`-H host -p port` as moto.server takes them; moto's WSGI application under waitress."""
    import argparse

    import waitress
    from moto.server import DomainDispatcherApplication, create_backend_app

    parser = argparse.ArgumentParser()
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=5000)
    args = parser.parse_args(argv)
    app = ServiceTime(DomainDispatcherApplication(create_backend_app))
    print(f"moto-server: waitress (HTTP/1.1 keep-alive) on {args.host}:{args.port}", file=sys.stderr)
    # One request at a time per connection; threads enough for the benchmarks' concurrency.
    waitress.serve(app, host=args.host, port=args.port, threads=16, ident="moto", _quiet=True)


if __name__ == "__main__":
    try:
        import waitress  # noqa: F401
    except ImportError:
        print("moto-server: waitress not installed; werkzeug closes every connection", file=sys.stderr)
        sys.exit(main(sys.argv[1:]))
    serve(sys.argv[1:])
