"""The console's server side against a fake SDK (no job API): sign-in (token form and
one-time link), sessions in HttpOnly SameSite=Strict cookies, CSRF on every state change,
the security headers, the Host check, tenancy (each call made with the session's own
token), the JSON the pages read, the live event stream and the artifacts."""
from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from trainserve.console import links
from trainserve.console.app import create_app
from trainserve.console.context import STATIC_DIR, TEMPLATES_DIR
from trainserve.console.settings import ConsoleSettings
from trainserve.core import errors, locations
from trainserve.core.pb import auth_pb2, job_pb2, spec_pb2

BASE = "http://127.0.0.1:8270"
ADMIN, ALICE, BOB = "admin-token", "alice-token", "bob-token"
TOKENS = {ADMIN: ("admin", "admin"), ALICE: ("alice", "user"), BOB: ("bob", "user")}


class FakeApi:
    """The job API as the SDK would show it: jobs with owners, tokens with users."""

    def __init__(self):
        self.jobs: dict[str, job_pb2.Job] = {}
        self.calls: list[tuple[str, str]] = []   # (token, method)
        self.clients: list[FakeClient] = []
        self.revoked: set[str] = set()

    def add(self, job_id: str, user: str, state=job_pb2.JOB_STATE_RUNNING, **spec) -> None:
        job = job_pb2.Job(id=job_id, user=user, state=state, epoch=2, total_epochs=5,
                          spec=spec_pb2.JobSpec(name=f"xor-{job_id}", **spec),
                          metrics={"val_loss": 0.5, "val_accuracy": 0.75, "train_loss": 0.4})
        job.created_at.FromSeconds(int(time.time()) - 60)
        self.jobs[job_id] = job


class FakeClient:
    """What the console uses of `trainserve.client.Client`, with the API's ownership rule."""

    def __init__(self, api: FakeApi, token: str):
        self.api, self.token, self.closed = api, token, False
        api.clients.append(self)

    def _who(self, method: str) -> tuple[str, str]:
        self.api.calls.append((self.token, method))
        if self.token not in TOKENS or self.token in self.api.revoked:
            raise errors.Unauthenticated("invalid token")
        return TOKENS[self.token]

    def _job(self, job_id: str, method: str) -> job_pb2.Job:
        user, role = self._who(method)
        job = self.api.jobs.get(job_id)
        if job is None or (role != "admin" and job.user != user):
            raise errors.NotFound(f"job {job_id} not found")
        return job

    def whoami(self):
        user, role = self._who("whoami")
        return auth_pb2.Principal(user=user, role=role, auth_enabled=True)

    def list_jobs(self, state=None, page_size=50, page_token="", labels=None):
        user, role = self._who("list_jobs")
        jobs = [j for j in self.api.jobs.values() if role == "admin" or j.user == user]
        for selector in labels or []:
            key, _, value = selector.partition("=")
            jobs = [j for j in jobs if j.spec.labels.get(key) == value]
        if state:
            jobs = [j for j in jobs if job_pb2.JobState.Name(j.state).endswith(state.upper())]
        return job_pb2.ListJobsResponse(jobs=jobs[:page_size])

    def get_job(self, job_id):
        return self._job(job_id, "get_job")

    def cancel(self, job_id):
        job = self._job(job_id, "cancel")
        job.state = job_pb2.JOB_STATE_CANCELLED
        return job

    def curves(self, job_id):
        self._job(job_id, "curves")
        return {"job_id": job_id, "metrics": {"val_loss": [(1, 0.9), (2, 0.5)]}, "trials": {},
                "best_trial": "", "stride": 1}

    def compare(self, job_ids):
        jobs = [self._job(i, "compare") for i in job_ids]
        return job_pb2.CompareJobsResponse(
            jobs=[job_pb2.ComparedJob(job_id=j.id, name=j.spec.name, state=j.state,
                                      final_metrics=j.metrics, epochs=2,
                                      best={"val_loss": job_pb2.MetricBest(
                                          value=0.5, epoch=2, mode="min")}) for j in jobs],
            differences=[job_pb2.SpecDifference(path="name",
                                                values=[f'"{j.spec.name}"' for j in jobs])])

    def watch(self, job_id, after_event_id=""):
        self._job(job_id, "watch")
        for epoch in (1, 2, 3):
            yield job_pb2.JobEvent(job_id=job_id, event_id=f"{epoch}-0", epoch=job_pb2.EpochMetrics(
                epoch=epoch, total_epochs=3, metrics={"val_loss": 1.0 / epoch}))
        yield job_pb2.JobEvent(job_id=job_id, state=job_pb2.StateChanged(
            state=job_pb2.JOB_STATE_SUCCEEDED))

    def logs(self, job_id, follow=False, after_id=""):
        self._job(job_id, "logs")
        yield job_pb2.JobLogLine(id="1-0", rank=0, source="stdout", text="hello")
        yield job_pb2.JobLogLine(id="2-0", rank=1, source="stdout", text="from rank 1")

    def list_artifacts(self, job_id):
        self._job(job_id, "list_artifacts")
        return [job_pb2.ArtifactInfo(name="curves.png", content_type="image/png", size_bytes=4),
                job_pb2.ArtifactInfo(name="metrics.json", content_type="application/json")]

    def download_artifact(self, job_id, name, directory="."):
        self._job(job_id, "download_artifact")
        if name not in ("curves.png", "metrics.json"):
            raise errors.NotFound(f"no artifact {name!r}")
        path = Path(directory) / name
        path.write_bytes(b"\x89PNG" if name.endswith(".png") else b"{}")
        return path

    def close(self):
        self.closed = True


@pytest.fixture
def api():
    api = FakeApi()
    api.add("j-alice", "alice", labels={"course": "week3"})
    api.add("j-alice2", "alice", state=job_pb2.JOB_STATE_SUCCEEDED)
    api.add("j-bob", "bob")
    return api


@pytest.fixture
def state_dir(tmp_path):
    token_file = locations.admin_token_file(tmp_path)
    token_file.parent.mkdir(parents=True)
    token_file.write_text(ADMIN + "\n")
    return tmp_path


@pytest.fixture
def app(api, state_dir):
    settings = ConsoleSettings(api="127.0.0.1:1", port=8270, state_dir=state_dir)
    return create_app(settings, client_factory=lambda token: FakeClient(api, token))


def browser(app) -> TestClient:
    return TestClient(app, base_url=BASE, follow_redirects=False)


def csrf_of(page: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def sign_in(app, token: str) -> TestClient:
    client = browser(app)
    form = client.get("/signin")
    answer = client.post("/signin", data={"token": token, "csrf_token": csrf_of(form.text)})
    assert answer.status_code == 303, answer.text
    return client


# -- sign-in and sessions -------------------------------------------------------------------

def test_pages_and_data_need_a_session(app):
    client = browser(app)
    page = client.get("/jobs/j-alice")
    assert page.status_code == 303 and page.headers["location"] == "/signin?next=/jobs/j-alice"
    data = client.get("/api/jobs")
    assert data.status_code == 401 and data.json()["signin"] is True


def test_the_session_cookie_is_httponly_strict_and_changes_at_sign_in(app):
    client = browser(app)
    form = client.get("/signin")
    cookie = form.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    before = client.cookies["ts_session"]
    answer = client.post("/signin", data={"token": ALICE, "csrf_token": csrf_of(form.text),
                                          "next": "/jobs/j-alice"})
    assert answer.status_code == 303 and answer.headers["location"] == "/jobs/j-alice"
    assert "HttpOnly" in answer.headers["set-cookie"]
    after = client.cookies["ts_session"]
    assert after != before and ALICE not in answer.headers["set-cookie"]
    assert client.get("/api/jobs").json()["user"] == "alice"
    # The id of the form's session signs nobody in.
    planted = browser(app)
    planted.cookies.set("ts_session", before)
    assert planted.get("/api/jobs").status_code == 401


def test_a_wrong_token_is_refused(app, api):
    client = browser(app)
    form = client.get("/signin")
    answer = client.post("/signin", data={"token": "nope", "csrf_token": csrf_of(form.text)})
    assert answer.status_code == 401 and "did not accept" in answer.text
    assert client.get("/api/jobs").status_code == 401
    assert all(c.closed for c in api.clients if c.token == "nope")


def test_sign_in_without_the_forms_csrf_token_is_refused(app, api):
    client = browser(app)
    client.get("/signin")
    answer = client.post("/signin", data={"token": ALICE})
    assert answer.status_code == 403
    assert ("alice-token", "whoami") not in api.calls  # refused before the API is asked


def test_after_sign_in_goes_only_to_a_path_of_the_console(app):
    client = browser(app)
    form = client.get("/signin")
    answer = client.post("/signin", data={"token": ALICE, "csrf_token": csrf_of(form.text),
                                          "next": "//evil.example/x"})
    assert answer.headers["location"] == "/jobs"


def test_the_one_time_link_signs_in_as_the_local_admin_once(app, state_dir):
    code = links.mint(state_dir)
    client = browser(app)
    page = client.get(f"/signin/{code}")
    assert page.status_code == 200 and 'http-equiv="refresh"' in page.text
    assert "HttpOnly" in page.headers["set-cookie"]
    assert client.get("/api/jobs").json()["role"] == "admin"
    again = browser(app).get(f"/signin/{code}")
    assert again.status_code == 403 and "trainserve console" in again.text
    assert browser(app).get("/signin/" + "x" * 43).status_code == 403


def test_sign_out_needs_csrf_and_ends_the_session(app):
    client = sign_in(app, ALICE)
    page = client.get("/jobs")
    assert client.post("/signout", data={}).status_code == 403
    assert client.get("/api/jobs").status_code == 200
    answer = client.post("/signout", data={"csrf_token": csrf_of(page.text)})
    assert answer.status_code == 303
    assert client.get("/api/jobs").status_code == 401


def test_a_revoked_token_ends_the_session(app, api):
    client = sign_in(app, ALICE)
    api.revoked.add(ALICE)
    assert client.get("/api/jobs").status_code == 401
    api.revoked.clear()
    assert client.get("/api/jobs").status_code == 401  # the session is gone


# -- CSRF on state changes -----------------------------------------------------------------

def test_cancel_needs_the_sessions_csrf_token(app, api):
    client = sign_in(app, ALICE)
    page = client.get("/jobs/j-alice")
    assert client.post("/jobs/j-alice/cancel").status_code == 403
    assert client.post("/jobs/j-alice/cancel", data={"csrf_token": "forged"}).status_code == 403
    other = sign_in(app, ALICE)
    other_token = csrf_of(other.get("/jobs/j-alice").text)
    assert client.post("/jobs/j-alice/cancel",
                       data={"csrf_token": other_token}).status_code == 403
    assert api.jobs["j-alice"].state == job_pb2.JOB_STATE_RUNNING
    answer = client.post("/jobs/j-alice/cancel", data={"csrf_token": csrf_of(page.text)})
    assert answer.status_code == 303 and answer.headers["location"] == "/jobs/j-alice"
    assert api.jobs["j-alice"].state == job_pb2.JOB_STATE_CANCELLED


def test_a_state_change_from_another_origin_is_refused(app, api):
    client = sign_in(app, ALICE)
    token = csrf_of(client.get("/jobs/j-alice").text)
    answer = client.post("/jobs/j-alice/cancel", data={"csrf_token": token},
                         headers={"Origin": "http://evil.example"})
    assert answer.status_code == 403
    for origin in ("null", BASE):  # our pages send null (no-referrer) or their own origin
        assert client.post("/jobs/j-alice2/cancel", data={"csrf_token": token},
                           headers={"Origin": origin}).status_code == 303


# -- headers --------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/signin", "/healthz", "/jobs", "/api/jobs", "/nowhere",
                                  "/static/console.css"])
def test_every_answer_carries_the_security_headers(app, path):
    answer = browser(app).get(path)
    csp = answer.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp
    assert "'unsafe-inline'" not in csp and "frame-ancestors 'none'" in csp
    assert answer.headers["x-frame-options"] == "DENY"
    assert answer.headers["referrer-policy"] == "no-referrer"
    assert answer.headers["x-content-type-options"] == "nosniff"
    if not path.startswith("/static/"):
        assert answer.headers["cache-control"] == "no-store"


def test_a_foreign_host_header_is_refused(app):
    assert TestClient(app, base_url="http://evil.example:8270").get("/signin").status_code == 400
    for host in ("127.0.0.1:8270", "localhost:8270", "[::1]:8270"):
        assert browser(app).get("/healthz", headers={"Host": host}).status_code == 200


def test_pages_have_no_inline_script_or_style_and_assets_no_other_origin(app):
    client = sign_in(app, ALICE)
    for path in ("/signin", "/jobs", "/jobs/j-alice", "/compare?ids=j-alice,j-alice2"):
        html = client.get(path).text
        assert not re.search(r"<script(?![^>]*\bsrc=)", html), path
        assert not re.search(r"<style|\sstyle=|\son[a-z]+=", html), path
        assert not re.search(r"(src|href)=\"(https?:)?//", html), path
    for asset in list(STATIC_DIR.iterdir()) + list(TEMPLATES_DIR.iterdir()):
        text = asset.read_text()
        assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", text), asset.name
        assert ".innerHTML" not in text and "insertAdjacentHTML" not in text, asset.name


# -- tenancy and data -----------------------------------------------------------------------

def test_each_user_sees_only_their_jobs_with_their_own_token(app, api):
    alice, bob = sign_in(app, ALICE), sign_in(app, BOB)
    assert {j["id"] for j in alice.get("/api/jobs").json()["jobs"]} == {"j-alice", "j-alice2"}
    assert {j["id"] for j in bob.get("/api/jobs").json()["jobs"]} == {"j-bob"}
    assert bob.get("/api/jobs/j-alice").status_code == 404
    assert bob.get("/jobs/j-alice").status_code == 404
    assert bob.post("/jobs/j-alice/cancel",
                    data={"csrf_token": csrf_of(bob.get("/jobs").text)}).status_code == 404
    assert bob.get("/jobs/j-alice/artifacts/curves.png").status_code == 404
    assert bob.get("/api/compare?ids=j-alice,j-bob").status_code == 404
    tokens = {token for token, method in api.calls if method != "whoami"}
    assert tokens == {ALICE, BOB}  # never the admin's, never none


def test_jobs_filter_by_state_and_labels(app):
    client = sign_in(app, ALICE)
    rows = client.get("/api/jobs?label=course=week3").json()["jobs"]
    assert [r["id"] for r in rows] == ["j-alice"]
    assert rows[0]["labels"] == {"course": "week3"}
    assert rows[0]["metric"] == {"name": "val_accuracy", "value": 0.75}
    rows = client.get("/api/jobs?state=succeeded").json()["jobs"]
    assert [r["id"] for r in rows] == ["j-alice2"] and rows[0]["terminal"] is True


def test_job_curves_and_compare(app):
    client = sign_in(app, ALICE)
    job = client.get("/api/jobs/j-alice").json()
    assert job["state"] == "running" and "name: xor-j-alice" in job["spec"]
    assert client.get("/api/jobs/j-alice/curves").json()["metrics"] == {
        "val_loss": [[1, 0.9], [2, 0.5]]}
    got = client.get("/api/compare?ids=j-alice,j-alice2").json()
    assert [j["id"] for j in got["jobs"]] == ["j-alice", "j-alice2"]
    assert got["jobs"][0]["best"]["val_loss"] == {"value": 0.5, "epoch": 2, "mode": "min"}
    assert got["jobs"][0]["curves"] == {"val_loss": [[1, 0.9], [2, 0.5]]}
    assert got["differences"] == [{"path": "name",
                                   "values": ['"xor-j-alice"', '"xor-j-alice2"']}]


def test_the_live_stream_sends_new_epochs_logs_and_the_end(app, api):
    client = sign_in(app, ALICE)
    with client.stream("GET", "/api/jobs/j-alice/live?since_epoch=1") as answer:
        assert answer.headers["content-type"].startswith("text/event-stream")
        body = "".join(answer.iter_text())
    events = re.findall(r"event: (\w+)\ndata: (.*)\n", body)
    epochs = [data for kind, data in events if kind == "epoch"]
    assert len(epochs) == 2 and '"epoch":2' in epochs[0]  # epoch 1 the page had
    assert [kind for kind, _ in events].count("log") == 2
    assert events[-1][0] == "end" and ("state", '{"state":"succeeded","terminal":true,'
                                                '"message":""}') in events
    streams = [c for c in api.clients if c.token == ALICE][1:]
    assert streams and all(c.closed for c in streams)  # the stream's own client is closed


def test_artifacts_are_served_with_their_type(app):
    client = sign_in(app, ALICE)
    listed = client.get("/api/jobs/j-alice2/artifacts").json()["artifacts"]
    assert listed[0]["url"] == "/jobs/j-alice2/artifacts/curves.png"
    png = client.get(listed[0]["url"])
    assert png.headers["content-type"] == "image/png" and png.content == b"\x89PNG"
    assert png.headers["content-disposition"].startswith("inline")
    other = client.get("/jobs/j-alice2/artifacts/metrics.json")
    assert other.headers["content-disposition"].startswith("attachment")
    assert client.get("/jobs/j-alice2/artifacts/secret.txt").status_code == 404


def test_pages_render(app):
    client = sign_in(app, ALICE)
    jobs = client.get("/jobs")
    assert jobs.status_code == 200 and 'aria-current="page"' in jobs.text
    assert "alice" in jobs.text and "Sign out" in jobs.text
    job = client.get("/jobs/j-alice")
    assert 'data-job-id="j-alice"' in job.text and "Cancel job" in job.text
    compare = client.get("/compare?ids=j-alice&ids=j-alice2")
    assert 'data-ids="j-alice,j-alice2"' in compare.text


def test_the_console_binds_loopback_only():
    from trainserve.console.__main__ import parse_args
    settings = parse_args(["--listen", "127.0.0.1:8270", "--api", "127.0.0.1:50051"])
    assert (settings.host, settings.port, settings.state_dir) == ("127.0.0.1", 8270, None)
    with pytest.raises(SystemExit):
        parse_args(["--listen", "0.0.0.0:8270", "--api", "127.0.0.1:50051"])


def test_plots_refused_while_others_render_are_asked_for_again(app, api, monkeypatch):
    """The API renders two plots of a user at a time; a page asks for all at once."""
    for method in ("download_artifact", "list_artifacts"):
        refusals = iter([errors.ResourceExhausted("2 renderings in progress")] * 2)
        real = getattr(FakeClient, method)

        def busy(self, *args, refusals=refusals, real=real):
            error = next(refusals, None)
            if error is not None:
                raise error
            return real(self, *args)
        monkeypatch.setattr(FakeClient, method, busy)
    monkeypatch.setattr("trainserve.console.pages.time.sleep", lambda s: None)
    client = sign_in(app, ALICE)
    assert client.get("/jobs/j-alice2/artifacts/curves.png").content == b"\x89PNG"
    assert len(client.get("/api/jobs/j-alice2/artifacts").json()["artifacts"]) == 2
