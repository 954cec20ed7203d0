"""moto's server, with one fix so that benchmarks measure nylas-sync rather than moto.

moto 5's SendMessage reads the queue's ContentBasedDeduplication through `Queue.attributes`,
which recomputes every attribute, the approximate message counts included: a walk over every
message in the queue, for every message sent. Enqueueing n jobs then costs moto O(n^2) (at
100,000 grants, hours). The fix reads the one attribute; behaviour is unchanged (counts are
still computed by GetQueueAttributes). If moto's code no longer has the line, it runs as is.

Used by tests/bench/run through tests/with-moto (MOTO_SERVER_SCRIPT); the tests use plain moto.
"""
import inspect
import sys
import textwrap

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

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
