"""The replica that runs the models freezes its start-up heap, so the collector's full passes
do not walk torch's and Ray's objects while requests wait (serve.host.freeze_startup_heap)."""
import subprocess
import sys

PROBE = """
import gc
from trainserve.serve.host import colocated_backend
assert gc.get_freeze_count() == 0
colocated_backend("trainserve.training.artifacts:load_artifact", 1)
print(gc.get_freeze_count())
"""


def test_the_colocated_backend_freezes_what_start_up_allocated():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    assert int(out.split()[-1]) > 100_000  # torch alone brings more objects than that
