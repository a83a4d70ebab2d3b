"""Where the SDK sends inference when not told: the endpoint's own REST address as the job API
records it (so a stack on other ports needs no `http=`), else Serve's default address."""
from __future__ import annotations

import numpy as np

from tests.unit.test_client_sdk import (FakeOip, client, fake_api,  # noqa: F401 - fixtures
                                        fake_oip)
from trainserve.client import sdk
from trainserve.core.pb import deployment_pb2


def test_predict_goes_to_the_endpoints_own_address(client, fake_api, fake_oip):  # noqa: F811
    api, _ = fake_api
    api.deployments["adder"] = deployment_pb2.Deployment(
        name="adder", rest_url=f"http://{fake_oip}/v2/models/adder")
    out = client.predict("adder", np.ones((2, 1, 2, 2)), input_name="x")
    assert out["sum"].tolist() == [4.0, 4.0]
    assert client.model_metadata("adder")["name"] == "adder"
    assert [path for path, _ in FakeOip.requests] == ["/v2/models/adder/infer"]
    looked_up = [name for name, _ in api.requests if name == "GetDeployment"]
    assert looked_up == ["GetDeployment"]  # once per endpoint and client


def test_an_endpoint_unknown_to_the_job_api_goes_to_the_default(client, monkeypatch):  # noqa: F811
    sent = []
    monkeypatch.setattr(sdk.inference, "http_json",
                        lambda method, url, body, timeout, headers=None:
                        sent.append(url) or {"outputs": []})
    client.infer("elsewhere", {"inputs": []})
    assert sent == [f"http://{sdk.DEFAULT_INFERENCE_HTTP}/v2/models/elsewhere/infer"]
