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

The server also keeps the total time it has spent serving requests, read at
`GET /__bench/service-time` (nanoseconds): for each request, from its first byte read off the
connection to its answer's last byte sent, so waitress's parsing, the hand-over to a worker
thread, moto's application and the write-back (requests for that path are not counted). A
benchmark that times a function end to end can take that out: it is AWS's time in production,
not the function's. (Until 2026-12-03 it counted moto's application alone, from the request
handed to it to its answer produced; waitress's share outside it, about 0.7-0.9 ms per
`SendMessage` on the benchmarks' machine, stayed counted as the function's.)

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
    """The total wall time the server spends on requests (see the module's doc), in nanoseconds."""

    def __init__(self):
        self.lock = threading.Lock()
        self.total_ns = 0


SERVICE_TIME = ServiceTime()


class ServeServiceTime:
    """WSGI middleware: answers SERVICE_TIME_PATH with the total, passes anything else to `app`."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO") != SERVICE_TIME_PATH:
            return self.app(environ, start_response)
        with SERVICE_TIME.lock:
            body = str(SERVICE_TIME.total_ns).encode()
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]


def timed_channel(base):
    """waitress's channel (one per connection), timing each request from its first byte read to
    its answer's last byte sent. Clients here send one request at a time per connection."""

    class TimedChannel(base):
        started = None  # when the request being served began to arrive
        counted = True  # False for a request of SERVICE_TIME_PATH

        def received(self, data):
            with SERVICE_TIME.lock:
                if data and self.started is None and self.request is None:
                    self.started = time.perf_counter_ns()
                    self.counted = True
            handled = super().received(data)
            with SERVICE_TIME.lock:
                if any(getattr(r, "path", None) == SERVICE_TIME_PATH for r in self.requests):
                    self.counted = False
            return handled

        def answered(self):
            """Counts the request once its answer is out: nothing left to send, none pending."""
            with SERVICE_TIME.lock:
                if self.started is None or self.total_outbufs_len or self.requests or self.request is not None:
                    return
                if self.counted:
                    SERVICE_TIME.total_ns += time.perf_counter_ns() - self.started
                self.started = None

        def _flush_some(self, do_close=True):
            sent = super()._flush_some(do_close=do_close)
            self.answered()
            return sent

        def service(self):
            # An answer the worker thread sent whole (one at least send_bytes long) leaves
            # nothing for the main thread's flush to count it by.
            super().service()
            self.answered()

    return TimedChannel


def serve(argv):
    """`-H host -p port` as moto.server takes them; moto's WSGI application under waitress."""
    import argparse

    import waitress
    from moto.server import DomainDispatcherApplication, create_backend_app

    parser = argparse.ArgumentParser()
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=5000)
    args = parser.parse_args(argv)
    app = ServeServiceTime(DomainDispatcherApplication(create_backend_app))
    print(f"moto-server: waitress (HTTP/1.1 keep-alive) on {args.host}:{args.port}", file=sys.stderr)
    # One request at a time per connection; threads enough for the benchmarks' concurrency.
    server = waitress.create_server(app, host=args.host, port=args.port, threads=16, ident="moto")
    server.channel_class = timed_channel(server.channel_class)
    server.run()


if __name__ == "__main__":
    try:
        import waitress  # noqa: F401
    except ImportError:
        print("moto-server: waitress not installed; werkzeug closes every connection", file=sys.stderr)
        sys.exit(main(sys.argv[1:]))
    serve(sys.argv[1:])
