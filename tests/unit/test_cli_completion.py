"""Shell completion as bash asks for it (the `trainserve` script, a real process): job ids,
endpoint and model names come from the API; with no API there, completion offers nothing and
prints no error into the shell."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.test_client_sdk import fake_api  # noqa: F401 - fixture
from trainserve.core.pb import deployment_pb2, model_pb2
from trainserve.core.ports import free_port

TRAINSERVE = Path(sys.executable).with_name("trainserve")


def complete(line: str, address: str, tmp_path) -> tuple[list[str], str]:
    """What bash would offer after `line` (the last word the one being completed)."""
    words = line.split(" ")
    env = {**os.environ, "_TRAINSERVE_COMPLETE": "complete_bash", "COMP_WORDS": line,
           "COMP_CWORD": str(len(words) - 1), "TRAINSERVE_API": address,
           "TRAINSERVE_STATE_DIR": str(tmp_path), "TRAINSERVE_TOKEN": ""}
    run = subprocess.run([str(TRAINSERVE)], env=env, capture_output=True, text=True,
                         timeout=60)
    return run.stdout.split(), run.stderr


@pytest.fixture
def api(fake_api):  # noqa: F811
    api, address = fake_api
    for job_id in ("j-19af3c2b1d40000002a", "j-19af3c2b1d40000002b", "j-19af4000000000000c1"):
        api.add_job(job_id)
    api.deployments["xor"] = deployment_pb2.Deployment(name="xor")
    api.deployments["digits"] = deployment_pb2.Deployment(name="digits")
    api.models.append(model_pb2.ModelVersion(name="xor-mlp", version=1))
    return address


def test_job_ids_complete_from_the_api(api, tmp_path):
    offered, _ = complete("trainserve job j-19af3c", api, tmp_path)
    assert offered == ["j-19af3c2b1d40000002b", "j-19af3c2b1d40000002a"]  # newest first
    offered, _ = complete("trainserve logs j-19af4", api, tmp_path)
    assert offered == ["j-19af4000000000000c1"]


def test_endpoint_and_model_names_complete_from_the_api(api, tmp_path):
    assert complete("trainserve deployment di", api, tmp_path)[0] == ["digits"]
    assert complete("trainserve undeploy x", api, tmp_path)[0] == ["xor"]
    assert complete("trainserve deploy xo", api, tmp_path)[0] == ["xor-mlp"]


def test_without_an_api_completion_offers_nothing_quietly(tmp_path):
    offered, stderr = complete("trainserve job j-", f"127.0.0.1:{free_port()}", tmp_path)
    assert offered == [] and stderr == ""


def test_install_completion_is_offered(tmp_path):
    run = subprocess.run([str(TRAINSERVE), "--help"], capture_output=True, text=True,
                         env={**os.environ, "TRAINSERVE_STATE_DIR": str(tmp_path)}, timeout=60)
    assert "--install-completion" in run.stdout
