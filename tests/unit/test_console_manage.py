"""The console's searches, models, endpoints and datasets pages against a fake SDK (no job
API): CSRF on every state change (deploy, rollout, promote, rollback, undeploy, try it,
upload, delete), sign-in required, and tenancy: each call is made with the session's own
token, and a second user can neither see nor act on the first one's search, model,
endpoint or dataset. Also the try-it requests built from a model's signature, and the
serving metrics read from Ray's metrics agents' Prometheus text."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from trainserve.console import serving_stats, tryit
from trainserve.console.app import create_app
from trainserve.console.settings import ConsoleSettings
from trainserve.core import errors
from trainserve.core.pb import dataset_pb2, deployment_pb2, job_pb2, model_pb2, spec_pb2

from tests.unit.test_console_app import (ALICE, BOB, FakeApi, FakeClient, browser, csrf_of,
                                         sign_in)

READY = deployment_pb2.DEPLOYMENT_STATE_READY
PENDING = deployment_pb2.DEPLOYMENT_STATE_PENDING


class ManageApi(FakeApi):
    def __init__(self):
        super().__init__()
        self.models: list[model_pb2.ModelVersion] = []
        self.deployments: dict[str, deployment_pb2.Deployment] = {}
        self.datasets: dict[str, dataset_pb2.Dataset] = {}
        self.inferred: list[tuple[str, str, dict]] = []   # (token, endpoint, request)


class ManageClient(FakeClient):
    """The SDK's registry, deployment, dataset and inference calls, owner-checked."""

    def _mine(self, obj, method: str, what: str, name: str):
        user, role = self._who(method)
        if obj is None or (role != "admin" and obj.user != user):
            raise errors.NotFound(f"{what} {name!r} not found")
        return obj

    def list_models(self, name=None):
        user, role = self._who("list_models")
        return [m for m in self.api.models if (role == "admin" or m.user == user)
                and (not name or m.name == name)]

    def get_model(self, name, version=0):
        found = [m for m in self.list_models(name) if version in (0, m.version)]
        if not found:
            raise errors.NotFound(f"model {name!r} not found")
        return max(found, key=lambda m: m.version)

    def deploy(self, model, version=0, name=None, wait=True, **kw):
        assert wait is False  # the console never blocks a request on loading
        m = self.get_model(model, version)
        dep = deployment_pb2.Deployment(name=name or model, model_name=model,
                                        model_version=m.version, state=PENDING, user=m.user,
                                        rest_url=f"http://127.0.0.1:8000/v2/models/{name}")
        self.api.deployments[dep.name] = dep
        return dep

    def get_deployment(self, name):
        return self._mine(self.api.deployments.get(name), "get_deployment", "deployment", name)

    def list_deployments(self):
        user, role = self._who("list_deployments")
        return [d for d in self.api.deployments.values() if role == "admin" or d.user == user]

    def rollout(self, name, version=0, percent=None, model="", wait=False, **kw):
        dep = self.get_deployment(name)
        dep.canary_version, dep.canary_percent, dep.canary_state = version, percent, READY
        return dep

    def promote(self, name):
        dep = self.get_deployment(name)
        dep.model_version, dep.canary_version, dep.canary_percent = dep.canary_version, 0, 0
        return dep

    def rollback(self, name):
        dep = self.get_deployment(name)
        dep.canary_version = dep.canary_percent = 0
        return dep

    def undeploy(self, name):
        return self.api.deployments.pop(self.get_deployment(name).name)

    def infer(self, name, request, http="127.0.0.1:8000"):
        self.api.inferred.append((self.token, name, request))
        return {"model_name": name, "model_version": "1", "outputs": [
            {"name": "probabilities", "datatype": "FP32", "shape": [1, 3],
             "data": [0.1, 0.7, 0.2]},
            {"name": "label", "datatype": "INT64", "shape": [1], "data": [1]}]}

    def list_datasets(self):
        user, role = self._who("list_datasets")
        return [d for d in self.api.datasets.values() if role == "admin" or d.user == user]

    def get_dataset(self, name):
        return self._mine(self.api.datasets.get(name), "get_dataset", "dataset", name)

    def upload_dataset(self, path, name, fmt=None, description=""):
        user, _ = self._who("upload_dataset")
        held = self.api.datasets.get(name)
        if held is not None and held.user != user:
            raise errors.AlreadyExists(f"dataset name {name!r} is taken")
        lines = Path(path).read_text().splitlines()
        got = dataset_pb2.Dataset(name=name, format=fmt, user=user, description=description,
                                  columns=lines[0].split(","), num_rows=len(lines) - 1,
                                  size_bytes=Path(path).stat().st_size, sha256="ab" * 32)
        self.api.datasets[name] = got
        return got

    def delete_dataset(self, name):
        return self.api.datasets.pop(self.get_dataset(name).name)


def digits_model(user: str, version: int = 1) -> model_pb2.ModelVersion:
    return model_pb2.ModelVersion(
        name=f"digits-{user}", version=version, user=user, job_id=f"j-{user}",
        task="classification",
        dataset_hash="cd" * 32, seed=0, class_names=["0", "1", "2"], metrics={"test_accuracy": 0.9},
        spec=spec_pb2.JobSpec(name=f"digits-{user}", dataset=spec_pb2.DatasetSpec(name="digits")),
        inputs=[model_pb2.TensorSpec(name="input", datatype="FP32", shape=[-1, 1, 8, 8])],
        outputs=[model_pb2.TensorSpec(name="probabilities", datatype="FP32", shape=[-1, 3])])


@pytest.fixture
def api():
    api = ManageApi()
    api.add("s-alice", "alice", search=spec_pb2.SearchSpec(
        space={"optimizer.lr": "loguniform(1e-3, 1e-1)"}, metric="val_accuracy"))
    api.jobs["s-alice"].trials.add(id="t0", state="finished", epochs=3,
                                   config={"optimizer.lr": "0.01"},
                                   metrics={"val_accuracy": 0.9})
    api.jobs["s-alice"].trials.add(id="t1", state="stopped_early", epochs=1,
                                   config={"optimizer.lr": "0.05"},
                                   metrics={"val_accuracy": 0.5})
    api.jobs["s-alice"].best_trial = "t0"
    api.add("j-plain", "alice")
    api.models += [digits_model("alice", 1), digits_model("alice", 2), digits_model("bob")]
    client = ManageClient(api, ALICE)
    client.deploy("digits-alice", 1, "ep-alice", wait=False)
    api.deployments["ep-alice"].state = READY
    api.datasets["iris-bob"] = dataset_pb2.Dataset(name="iris-bob", format="csv", user="bob")
    return api


@pytest.fixture
def app(api, tmp_path):
    settings = ConsoleSettings(api="127.0.0.1:1", port=8270, serving_metrics=None)
    return create_app(settings, client_factory=lambda token: ManageClient(api, token))


def csrf(client) -> str:
    return csrf_of(client.get("/models").text)


# -- sign-in -------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/searches", "/searches/s-alice", "/models", "/endpoints",
                                  "/endpoints/ep-alice", "/datasets"])
def test_the_new_pages_need_a_session(app, path):
    answer = browser(app).get(path)
    assert answer.status_code == 303 and answer.headers["location"].startswith("/signin")


@pytest.mark.parametrize("path", ["/api/searches", "/api/models", "/api/endpoints",
                                  "/api/endpoints/ep-alice/stats", "/api/datasets"])
def test_their_data_needs_a_session(app, path):
    assert browser(app).get(path).status_code == 401


def test_pages_render_with_navigation_and_no_inline_script(app):
    client = sign_in(app, ALICE)
    import re
    for path in ("/searches", "/searches/s-alice", "/models", "/endpoints",
                 "/endpoints/ep-alice", "/datasets"):
        page = client.get(path)
        assert page.status_code == 200, path
        for link in ("/searches", "/models", "/endpoints", "/datasets", "/jobs", "/compare"):
            assert f'href="{link}"' in page.text, (path, link)
        assert not re.search(r"<script(?![^>]*\bsrc=)", page.text), path
        assert not re.search(r"<style|\sstyle=|\son[a-z]+=", page.text), path


# -- CSRF ----------------------------------------------------------------------------------

@pytest.mark.parametrize("path,data", [
    ("/models/digits-alice/2/deploy", {"endpoint": "ep2"}),
    ("/endpoints/ep-alice/rollout", {"version": "2", "percent": "30"}),
    ("/endpoints/ep-alice/promote", {}), ("/endpoints/ep-alice/rollback", {}),
    ("/endpoints/ep-alice/undeploy", {}),
])
def test_every_form_needs_the_sessions_csrf_token(app, api, path, data):
    client = sign_in(app, ALICE)
    before = {n: d.SerializeToString() for n, d in api.deployments.items()}
    assert client.post(path, data=data).status_code == 403
    assert client.post(path, data={**data, "csrf_token": "forged"}).status_code == 403
    other = csrf(sign_in(app, ALICE))
    assert client.post(path, data={**data, "csrf_token": other}).status_code == 403
    assert client.post(path, data={**data, "csrf_token": csrf(client)},
                       headers={"Origin": "http://evil.example"}).status_code == 403
    assert {n: d.SerializeToString() for n, d in api.deployments.items()} == before
    assert client.post(path, data={**data, "csrf_token": csrf(client)}).status_code == 303


def test_try_it_upload_and_delete_need_the_csrf_token(app, api):
    client = sign_in(app, ALICE)
    body = {"kind": "image", "values": [0.0] * 64}
    assert client.post("/api/endpoints/ep-alice/predict", json=body).status_code == 403
    assert client.post("/api/endpoints/ep-alice/predict", json=body,
                       headers={"X-CSRF-Token": "forged"}).status_code == 403
    assert api.inferred == []
    assert client.post("/api/datasets/upload?name=x&format=csv", content=b"a,b\n1,2\n"
                       ).status_code == 403
    assert "x" not in api.datasets
    client.post("/api/datasets/upload?name=x&format=csv", content=b"a,b\n1,2\n",
                headers={"X-CSRF-Token": csrf(client)})
    assert client.post("/datasets/x/delete", data={}).status_code == 403
    assert "x" in api.datasets


# -- what the pages do ---------------------------------------------------------------------

def test_deploy_rollout_promote_rollback_undeploy(app, api):
    client = sign_in(app, ALICE)
    token = csrf(client)
    answer = client.post("/models/digits-alice/1/deploy", data={"endpoint": "ep2",
                                                                "csrf_token": token})
    assert answer.headers["location"] == "/endpoints/ep2"
    assert api.deployments["ep2"].state == PENDING
    client.post("/endpoints/ep-alice/rollout", data={"version": "2", "percent": "30",
                                                     "csrf_token": token})
    got = client.get("/api/endpoints/ep-alice").json()
    assert got["endpoint"]["split"] == [
        {"version": 1, "percent": 70, "role": "stable", "state": "ready"},
        {"version": 2, "percent": 30, "role": "canary", "state": "ready", "target_percent": 30}]
    assert got["versions"] == [2, 1] and got["panel"]["kind"] == "image"
    assert got["panel"] == {"kind": "image", "height": 8, "width": 8, "channels": 1,
                            "pixel_max": 16}
    client.post("/endpoints/ep-alice/rollback", data={"csrf_token": token})
    assert client.get("/api/endpoints/ep-alice").json()["endpoint"]["split"][0]["percent"] == 100
    client.post("/endpoints/ep-alice/rollout", data={"version": "2", "percent": "50",
                                                     "csrf_token": token})
    client.post("/endpoints/ep-alice/promote", data={"csrf_token": token})
    assert api.deployments["ep-alice"].model_version == 2
    answer = client.post("/endpoints/ep-alice/undeploy", data={"csrf_token": token})
    assert answer.headers["location"] == "/endpoints" and "ep-alice" not in api.deployments


def test_try_it_sends_the_image_to_the_users_endpoint_and_shows_the_label(app, api):
    client = sign_in(app, ALICE)
    answer = client.post("/api/endpoints/ep-alice/predict",
                         json={"kind": "image", "values": [1.0] * 64},
                         headers={"X-CSRF-Token": csrf(client)})
    assert answer.status_code == 200, answer.text
    got = answer.json()
    assert got["label"] == "1" and got["probabilities"][1] == {"class": "1", "p": 0.7}
    token, endpoint, request = api.inferred[-1]
    assert (token, endpoint) == (ALICE, "ep-alice")
    assert request["inputs"][0]["shape"] == [1, 1, 8, 8]
    wrong = client.post("/api/endpoints/ep-alice/predict", json={"kind": "image", "values": [1]},
                        headers={"X-CSRF-Token": csrf(client)})
    assert wrong.status_code == 400 and "values" in wrong.json()["error"]


def test_a_search_shows_its_trials_and_a_plain_job_is_not_a_search(app):
    client = sign_in(app, ALICE)
    listed = client.get("/api/searches").json()["searches"]
    assert [s["id"] for s in listed] == ["s-alice"] and listed[0]["rank_metric"] == "val_accuracy"
    got = client.get("/api/searches/s-alice").json()
    assert got["best_trial"] == "t0" and got["mode"] == "max"
    assert [(t["id"], t["state"]) for t in got["trials"]] == [("t0", "finished"),
                                                             ("t1", "stopped_early")]
    assert got["space"] == {"optimizer.lr": "loguniform(1e-3, 1e-1)"}
    assert client.get("/api/searches/j-plain").status_code == 404


def test_models_show_metrics_and_lineage(app):
    client = sign_in(app, ALICE)
    models = client.get("/api/models").json()["models"]
    assert {(m["name"], m["version"]) for m in models} == {("digits-alice", 1),
                                                          ("digits-alice", 2)}
    m = models[0]
    assert m["job_id"] == "j-alice" and m["dataset_hash"] == "cd" * 32 and m["seed"] == 0
    assert m["dataset"] == "digits" and "name: digits-alice" in m["spec"]
    assert m["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 1, 8, 8],
                            "optional": False}]


def test_a_dataset_is_uploaded_described_and_deleted(app, api):
    client = sign_in(app, ALICE)
    answer = client.post("/api/datasets/upload?name=pts&format=csv&description=two+points",
                         content=b"x,y,label\n1,2,a\n3,4,b\n",
                         headers={"X-CSRF-Token": csrf(client)})
    assert answer.status_code == 200, answer.text
    assert answer.json()["columns"] == ["x", "y", "label"] and answer.json()["num_rows"] == 2
    assert client.get("/api/datasets/pts").json()["description"] == "two points"
    assert client.post("/api/datasets/upload?name=pts&format=exe", content=b"x",
                       headers={"X-CSRF-Token": csrf(client)}).status_code == 400
    answer = client.post("/datasets/pts/delete", data={"csrf_token": csrf(client)})
    assert answer.status_code == 303 and "pts" not in api.datasets


def test_an_upload_past_the_consoles_limit_is_refused(api):
    settings = ConsoleSettings(api="127.0.0.1:1", port=8270, max_upload_bytes=10)
    app = create_app(settings, client_factory=lambda token: ManageClient(api, token))
    client = sign_in(app, ALICE)
    answer = client.post("/api/datasets/upload?name=big&format=csv", content=b"a\n" * 100,
                         headers={"X-CSRF-Token": csrf(client)})
    assert answer.status_code == 429 and "big" not in api.datasets


# -- tenancy -------------------------------------------------------------------------------

def test_a_second_user_neither_sees_nor_acts_on_the_firsts_objects(app, api):
    bob = sign_in(app, BOB)
    token = csrf(bob)
    assert bob.get("/api/searches").json()["searches"] == []
    assert bob.get("/api/searches/s-alice").status_code == 404
    assert bob.get("/searches/s-alice").status_code == 404
    assert {m["name"] for m in bob.get("/api/models").json()["models"]} == {"digits-bob"}
    assert bob.post("/models/digits-alice/1/deploy", data={"endpoint": "mine",
                                                           "csrf_token": token}).status_code == 404
    assert bob.get("/api/endpoints").json()["endpoints"] == []
    for path in ("/api/endpoints/ep-alice", "/api/endpoints/ep-alice/stats",
                 "/endpoints/ep-alice"):
        assert bob.get(path).status_code == 404, path
    for action in ("rollout", "promote", "rollback", "undeploy"):
        assert bob.post(f"/endpoints/ep-alice/{action}",
                        data={"version": "2", "csrf_token": token}).status_code == 404
    assert bob.post("/api/endpoints/ep-alice/predict", json={"kind": "image",
                    "values": [0] * 64}, headers={"X-CSRF-Token": token}).status_code == 404
    assert api.inferred == [] and "ep-alice" in api.deployments
    alice = sign_in(app, ALICE)
    assert alice.get("/api/datasets").json()["datasets"] == []
    assert alice.get("/api/datasets/iris-bob").status_code == 404
    assert alice.post("/datasets/iris-bob/delete",
                      data={"csrf_token": csrf(alice)}).status_code == 404
    assert "iris-bob" in api.datasets
    assert {t for t, m in api.calls if m != "whoami"} == {ALICE, BOB}


# -- try-it requests -----------------------------------------------------------------------

def test_the_panel_follows_the_signature():
    numbers = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}]}
    assert tryit.panel(numbers) == {"kind": "numbers", "features": 4, "names": []}
    assert tryit.oip_request(numbers, {"kind": "numbers", "values": [1, 2, 3, 4]})["inputs"] == [
        {"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [1.0, 2.0, 3.0, 4.0]}]
    with pytest.raises(errors.InvalidArgument, match="values"):
        tryit.oip_request(numbers, {"kind": "numbers", "values": [1, 2]})
    with pytest.raises(errors.InvalidArgument, match=r"values\[1\]"):
        tryit.oip_request(numbers, {"kind": "numbers", "values": [1, "x", 3, 4]})
    gpt = {"inputs": [{"name": "prompt", "datatype": "BYTES", "shape": [-1]}]}
    request = tryit.oip_request(gpt, {"kind": "prompt", "prompt": "To be",
                                      "max_new_tokens": "50", "temperature": "0.5", "seed": 3})
    assert request["inputs"][0]["data"] == ["To be"]
    assert request["parameters"] == {"seed": 3, "max_new_tokens": 50, "temperature": 0.5}
    with pytest.raises(errors.InvalidArgument, match="max_new_tokens"):
        tryit.oip_request(gpt, {"kind": "prompt", "prompt": "x", "max_new_tokens": 10**6})
    with pytest.raises(errors.InvalidArgument, match="kind"):
        tryit.oip_request(gpt, {"kind": "image", "values": []})


def test_tabular_forms_name_their_columns_and_raw_rows_go_as_text():
    from trainserve.console.registry_views import model_json
    from trainserve.core.pb import model_pb2
    plain = model_pb2.ModelVersion(name="iris", version=1)
    plain.spec.dataset.feature_columns.extend(["sepal_len", "sepal_wid"])
    plain.inputs.add(name="input", datatype="FP32", shape=[-1, 2])
    assert tryit.panel(model_json(plain))["names"] == ["sepal_len", "sepal_wid"]

    clinical = model_pb2.ModelVersion(name="ckd", version=1)
    clinical.inputs.add(name="input", datatype="BYTES", shape=[-1, 2])
    clinical.preprocessing.columns.add(name="sex", kind="categorical", categories=["F", "M"])
    clinical.preprocessing.columns.add(name="creatinine", kind="numeric", fill=1.1)
    model = model_json(clinical)
    panel = tryit.panel(model)
    assert panel["kind"] == "row"
    assert [(c["name"], c["categories"], c["missing_ok"]) for c in panel["columns"]] == [
        ("sex", ["F", "M"], True), ("creatinine", [], True)]
    request = tryit.oip_request(model, {"kind": "row", "cells": ["M", ""]})
    assert request["inputs"] == [{"name": "input", "datatype": "BYTES", "shape": [1, 2],
                                  "data": ["M", ""]}]
    with pytest.raises(errors.InvalidArgument, match="cells"):
        tryit.oip_request(model, {"kind": "row", "cells": ["M"]})
    with pytest.raises(errors.InvalidArgument, match=r"cells\[1\]"):
        tryit.oip_request(model, {"kind": "row", "cells": ["M", "9" * 1000]})



def test_the_models_page_marks_an_optional_output():
    from trainserve.console.registry_views import model_json
    from trainserve.core.pb import model_pb2
    gpt = model_pb2.ModelVersion(name="gpt", version=1)
    gpt.outputs.add(name="text", datatype="BYTES", shape=[-1])
    gpt.outputs.add(name="attention", datatype="FP32", shape=[-1, 2, 4, -1, -1], optional=True)
    assert [(o["name"], o["optional"]) for o in model_json(gpt)["outputs"]] == [
        ("text", False), ("attention", True)]


# -- serving metrics -----------------------------------------------------------------------

PROM_TEXT = """# HELP ray_trainserve_inference_requests_total requests
ray_trainserve_inference_requests_total{Component="core_worker",code="OK",endpoint="ep-alice",model="digits",version="1"} 8.0
ray_trainserve_inference_requests_total{Component="core_worker",code="INVALID_ARGUMENT",endpoint="ep-alice",model="digits",version="2"} 2.0
ray_trainserve_inference_requests_total{code="OK",endpoint="other",model="x",version="1"} 50.0
ray_trainserve_inference_request_duration_seconds_bucket{endpoint="ep-alice",le="0.001",model="digits",version="1"} 4.0
ray_trainserve_inference_request_duration_seconds_bucket{endpoint="ep-alice",le="0.01",model="digits",version="1"} 10.0
ray_trainserve_inference_request_duration_seconds_bucket{endpoint="ep-alice",le="+Inf",model="digits",version="1"} 10.0
ray_trainserve_inference_request_duration_seconds_sum{endpoint="ep-alice",model="digits",version="1"} 0.02
ray_trainserve_inference_request_duration_seconds_count{endpoint="ep-alice",model="digits",version="1"} 10.0
"""


@pytest.fixture
def metrics_agent(tmp_path):
    """A real HTTP server answering /metrics with PROM_TEXT, and Ray's discovery file
    listing it."""
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = PROM_TEXT.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sd = tmp_path / "prom_metrics_service_discovery.json"
    sd.write_text(json.dumps([{"labels": {"job": "ray"},
                               "targets": [f"127.0.0.1:{server.server_port}"]}]))
    yield sd
    server.shutdown()


def test_serving_stats_come_from_the_metrics_agents(metrics_agent):
    clock = iter([0.0, 10.0])
    stats = serving_stats.ServingStats(metrics_agent, clock=lambda: next(clock))
    first = stats.endpoint("ep-alice")
    assert first["available"] and first["requests"] == 10 and first["errors"] == 2
    assert first["by_version"] == {"1": 8, "2": 2} and first["rate_per_s"] is None
    assert first["latency_mean_ms"] == pytest.approx(2.0)
    assert 1.0 < first["latency_p50_ms"] < 10.0 and first["latency_p99_ms"] <= 10.0
    assert stats.endpoint("ep-alice")["rate_per_s"] == 0.0  # nothing new in 10 s
    assert serving_stats.ServingStats(None).endpoint("ep-alice")["available"] is False


def test_a_searchs_trials_compare_with_their_own_curves():
    from trainserve.console.views import compare_json
    if "trial_id" not in job_pb2.ComparedJob.DESCRIPTOR.fields_by_name:
        pytest.skip("this job API's CompareJobs has no trial rows")
    answer = job_pb2.CompareJobsResponse(jobs=[
        job_pb2.ComparedJob(job_id="s-alice", trial_id=t, name="search") for t in ("t0", "t1")])
    curves = {"s-alice": {"metrics": {}, "best_trial": "t0", "stride": 1, "trials": {
        "t0": {"val_loss": [(1, 0.5)]}, "t1": {"val_loss": [(1, 0.7), (2, 0.6)]}}}}
    got = compare_json(answer, curves)["jobs"]
    assert [(j["id"], j["link"]) for j in got] == [("s-alice/t0", "/searches/s-alice"),
                                                   ("s-alice/t1", "/searches/s-alice")]
    assert got[1]["curves"] == {"val_loss": [[1, 0.7], [2, 0.6]]}
