"""The gateway's deferred backend: built off the replica's start-up, calls wait for it and
its build's error reaches them."""
import asyncio
import threading

import pytest

from trainserve.serve.gateway import DeferredBackend


class Recorder:
    def __init__(self):
        self.calls = []

    async def load(self, model_id, artifact_dir):
        self.calls.append(("load", model_id))

    async def predict(self, model_id, artifact_dir, inputs, parameters, batching=None):
        self.calls.append(("predict", model_id))
        return {"y": inputs["x"]}

    async def stats(self):
        return {"batch_sizes": {}}


def test_calls_wait_for_the_build_and_reach_the_backend():
    release, built = threading.Event(), Recorder()

    def build():
        release.wait(5)
        return built

    deferred = DeferredBackend(build)  # returns before the build is done

    async def use():
        task = asyncio.ensure_future(deferred.predict("m:1", "/a", {"x": 1}, {}))
        await asyncio.sleep(0.05)
        assert not task.done()
        release.set()
        await deferred.load("m:1", "/a")
        return await task, await deferred.stats()

    out, stats = asyncio.run(use())
    assert out == {"y": 1} and stats == {"batch_sizes": {}}
    assert sorted(built.calls) == [("load", "m:1"), ("predict", "m:1")]


def test_a_failed_build_is_raised_by_every_call():
    def build():
        raise ImportError("no torch here")

    deferred = DeferredBackend(build)
    for _ in range(2):
        with pytest.raises(ImportError, match="no torch"):
            asyncio.run(deferred.load("m:1", "/a"))
