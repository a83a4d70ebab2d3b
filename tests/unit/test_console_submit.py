"""The console's New job page and its management forms (delete a job; set and remove a
model alias; delete a model version) against a fake SDK: the CSRF token on each, the spec's
size bound, YAML and field-path errors shown with the spec kept, the API's refusals shown as
a message, and tenancy (a second user can neither submit as, nor delete or alias the
first user's things: the API's NOT_FOUND reaches the page as 404)."""
from __future__ import annotations

import html
import re

import pytest
import yaml

from trainserve.client import load_spec
from trainserve.console.app import create_app
from trainserve.console.settings import ConsoleSettings
from trainserve.console.submit import SPEC_LIMIT
from trainserve.core import errors
from trainserve.core.pb import job_pb2

from tests.unit.test_console_app import ALICE, BOB, browser, csrf_of, sign_in
from tests.unit.test_console_manage import ManageApi, ManageClient, digits_model

SPEC = """\
name: xor-web
dataset: {name: xor, num_samples: 200}
model: {mlp: {hidden: [8]}}
training: {epochs: 2}
"""
SUCCEEDED = job_pb2.JOB_STATE_SUCCEEDED


class SubmitClient(ManageClient):
    """ManageClient plus submitting, deleting jobs and versions, and aliases, as the API
    answers them (owner-checked; a served version or a running job refused)."""

    def submit(self, spec, request_id=None):
        user, _ = self._who("submit")
        if request_id in self.api.by_request:
            return self.api.jobs[self.api.by_request[request_id]]
        parsed = load_spec(spec)  # the SDK's own check: unknown fields, wrong types
        if parsed.training.epochs > 1000:
            raise errors.InvalidArgument("at most 1000", field="spec.training.epochs")
        job = job_pb2.Job(id=f"j-new-{len(self.api.jobs)}", user=user, spec=parsed,
                          state=job_pb2.JOB_STATE_QUEUED)
        self.api.jobs[job.id] = job
        self.api.by_request[request_id] = job.id
        self.api.submitted.append((self.token, spec))
        return job

    def delete_job(self, job_id):
        job = self._job(job_id, "delete_job")
        if job.state not in (SUCCEEDED, job_pb2.JOB_STATE_FAILED, job_pb2.JOB_STATE_CANCELLED):
            raise errors.FailedPrecondition(f"job {job_id} is still running: cancel it first")
        return self.api.jobs.pop(job_id)

    def _version(self, name, version, method):
        self._who(method)
        return self.get_model(name, version)

    def set_model_alias(self, name, alias, version=0):
        target = self._version(name, version, "set_model_alias")
        for m in self.api.models:
            if m.name == name and alias in m.aliases:
                m.aliases.remove(alias)
        target.aliases.append(alias)
        return target

    def delete_model_alias(self, name, alias=""):
        self._who("delete_model_alias")
        for m in self.list_models(name):
            if alias in m.aliases:
                m.aliases.remove(alias)
                return m
        raise errors.NotFound(f"model {name!r} has no alias {alias!r}")

    def delete_model_version(self, name, version=0):
        m = self._version(name, version, "delete_model_version")
        served = [d.name for d in self.api.deployments.values()
                  if d.model_name == name and d.model_version == m.version]
        if served:
            raise errors.FailedPrecondition(f"{name}:{m.version} is served by endpoint "
                                            f"{served[0]!r}: undeploy it first")
        self.api.models.remove(m)
        return m


@pytest.fixture
def api():
    api = ManageApi()
    api.submitted, api.by_request = [], {}
    api.add("j-alice", "alice", state=SUCCEEDED)
    api.add("j-running", "alice")
    api.add("j-bob", "bob", state=SUCCEEDED)
    api.models += [digits_model("alice", 1), digits_model("alice", 2), digits_model("bob")]
    SubmitClient(api, ALICE).deploy("digits-alice", 1, "ep-alice", wait=False)
    return api


@pytest.fixture
def app(api):
    settings = ConsoleSettings(api="127.0.0.1:1", port=8270, serving_metrics=None)
    return create_app(settings, client_factory=lambda token: SubmitClient(api, token))


def new_job_form(client) -> str:
    page = client.get("/jobs/new")
    assert page.status_code == 200
    return csrf_of(page.text)


def request_id_of(page: str) -> str:
    return re.search(r'name="request_id" value="([0-9a-f]{32})"', page).group(1)


def post_spec(client, spec: str, action: str = "submit", token: str | None = None):
    page = client.get("/jobs/new").text
    token = csrf_of(page) if token is None else token
    return client.post("/jobs/new", data={"csrf_token": token, "spec": spec, "action": action,
                                          "request_id": request_id_of(page)})


def alert_of(page: str) -> str:
    found = re.search(r'role="alert"[^>]*>([^<]*)<', page)
    assert found, page
    return html.unescape(found.group(1))


def textarea_of(page: str) -> str:
    return html.unescape(re.search(r"<textarea[^>]*>(.*?)</textarea>", page, re.S).group(1))


# -- the New job page -----------------------------------------------------------------------

def test_the_page_needs_a_session_and_is_linked_from_the_nav_and_the_jobs_list(app):
    answer = browser(app).get("/jobs/new")
    assert answer.status_code == 303 and answer.headers["location"].startswith("/signin")
    client = sign_in(app, ALICE)
    assert 'href="/jobs/new"' in client.get("/jobs").text
    page = client.get("/jobs/new").text
    assert 'href="/jobs/new" aria-current="page"' in page
    assert not re.search(r"<script(?![^>]*\bsrc=)|<style|\sstyle=|\son[a-z]+=", page)


def test_a_spec_is_submitted_as_the_signed_in_user_and_opens_the_jobs_page(app, api):
    client = sign_in(app, ALICE)
    answer = post_spec(client, SPEC)
    assert answer.status_code == 303
    job_id = answer.headers["location"].removeprefix("/jobs/")
    job = api.jobs[job_id]
    assert job.user == "alice" and job.spec.name == "xor-web" and job.spec.training.epochs == 2
    assert api.submitted == [(ALICE, yaml.safe_load(SPEC))]
    assert client.get(answer.headers["location"]).status_code == 200


def test_the_same_form_posted_twice_makes_one_job_and_each_rendering_a_new_one(app, api):
    client = sign_in(app, ALICE)
    page = client.get("/jobs/new").text
    form = {"csrf_token": csrf_of(page), "spec": SPEC, "request_id": request_id_of(page)}
    first, again = (client.post("/jobs/new", data=form) for _ in range(2))
    assert first.headers["location"] == again.headers["location"]
    assert len(api.submitted) == 1
    assert request_id_of(client.get("/jobs/new").text) != form["request_id"]
    refused = client.post("/jobs/new", data={**form, "request_id": "x"})
    assert refused.status_code == 400 and alert_of(refused.text).startswith("request_id: ")
    assert textarea_of(refused.text) == SPEC


def test_json_is_a_spec_too(app, api):
    client = sign_in(app, ALICE)
    answer = post_spec(client, '{"name": "j", "dataset": {"name": "xor"}}')
    assert answer.status_code == 303 and len(api.submitted) == 1


def test_no_submission_without_the_csrf_token_or_from_another_origin(app, api):
    client = sign_in(app, ALICE)
    for token in ("", "forged"):
        assert post_spec(client, SPEC, token=token).status_code == 403
    other = client.post("/jobs/new", data={"csrf_token": new_job_form(client), "spec": SPEC},
                        headers={"Origin": "http://evil.example"})
    assert other.status_code == 403
    assert api.submitted == []


def test_a_spec_past_the_size_bound_is_refused_before_it_is_read(app, api):
    client = sign_in(app, ALICE)
    big = SPEC + "description: " + "x" * SPEC_LIMIT + "\n"
    assert post_spec(client, big).status_code == 429
    assert api.submitted == []


def test_a_streamed_spec_past_the_size_bound_is_refused_as_it_is_read(app, api):
    client = sign_in(app, ALICE)
    token = new_job_form(client)
    chunk = b"x" * 65536

    def body():  # no Content-Length: sent chunked, counted as it arrives
        yield f"csrf_token={token}&spec=".encode()
        for _ in range(SPEC_LIMIT // len(chunk) + 2):
            yield chunk
    answer = client.post("/jobs/new", content=body(),
                         headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert answer.status_code == 429 and "larger than" in alert_of(answer.text)
    assert api.submitted == []


@pytest.mark.parametrize("text,expected", [
    ("name: [unclosed\n", "spec: not valid YAML or JSON: "),
    ("- name: a\n- name: b\n", "spec: a spec is a mapping of fields"),
    ("just text\n", "not a str"),
    ("a: &x [1, 2]\nb: *x\n", "anchors and aliases"),
    ("!!python/object/apply:os.system ['true']\n", "not valid YAML or JSON"),
])
def test_text_that_is_not_a_yaml_mapping_is_shown_again_with_the_error(app, api, text,
                                                                      expected):
    client = sign_in(app, ALICE)
    answer = post_spec(client, text)
    assert answer.status_code == 400
    assert expected in alert_of(answer.text)
    assert textarea_of(answer.text) == text  # kept, to be fixed
    assert api.submitted == []


@pytest.mark.parametrize("text,field", [
    (SPEC.replace("training:", "trainin:"), "spec.trainin"),            # the SDK's check
    (SPEC.replace("epochs: 2", "epochs: two"), "spec.training.epochs"),
    (SPEC.replace("epochs: 2", "epochs: 5000"), "spec.training.epochs"),  # the API's
])
def test_a_refused_field_is_named_by_its_path_and_the_spec_kept(app, api, text, field):
    client = sign_in(app, ALICE)
    answer = post_spec(client, text)
    assert answer.status_code == 400
    assert alert_of(answer.text).startswith(field + ": ")
    assert f'data-field="{field}"' in answer.text and 'aria-invalid="true"' in answer.text
    assert textarea_of(answer.text) == text
    assert all(j.spec.name != "xor-web" for j in api.jobs.values())


def test_check_validates_without_submitting(app, api):
    client = sign_in(app, ALICE)
    answer = post_spec(client, SPEC, action="validate")
    assert answer.status_code == 200 and "The spec is valid" in answer.text
    assert textarea_of(answer.text) == SPEC and 'role="alert"' not in answer.text
    bad = post_spec(client, SPEC.replace("epochs: 2", "epochs: two"), action="validate")
    assert alert_of(bad.text).startswith("spec.training.epochs: ")
    assert api.submitted == [] and not [c for c in api.calls if c[1] == "submit"]


# -- deleting a job -------------------------------------------------------------------------

def test_a_finished_job_is_deleted_with_its_button(app, api):
    client = sign_in(app, ALICE)
    page = client.get("/jobs/j-alice").text
    assert 'action="/jobs/j-alice/delete"' in page
    answer = client.post("/jobs/j-alice/delete", data={"csrf_token": csrf_of(page)})
    assert answer.status_code == 303 and answer.headers["location"] == "/jobs"
    assert "j-alice" not in api.jobs


def test_deleting_a_job_needs_the_csrf_token(app, api):
    client = sign_in(app, ALICE)
    for form in ({}, {"csrf_token": "forged"}):
        assert client.post("/jobs/j-alice/delete", data=form).status_code == 403
    assert "j-alice" in api.jobs


def test_a_running_job_is_not_deleted_and_the_reason_is_shown(app, api):
    client = sign_in(app, ALICE)
    answer = client.post("/jobs/j-running/delete", data={"csrf_token": csrf_of(
        client.get("/jobs/j-running").text)})
    assert answer.status_code == 409
    assert "still running: cancel it first" in alert_of(answer.text)
    assert '<a href="/jobs/j-running">Back to the job</a>' in answer.text
    assert "j-running" in api.jobs


def test_another_user_cannot_delete_the_first_users_job(app, api):
    bob = sign_in(app, BOB)
    answer = bob.post("/jobs/j-alice/delete", data={"csrf_token": new_job_form(bob)})
    assert answer.status_code == 404 and "not found" in alert_of(answer.text)
    assert "j-alice" in api.jobs


# -- model aliases and versions ---------------------------------------------------------------

def models_csrf(client) -> str:
    return csrf_of(client.get("/models").text)


def test_an_alias_is_set_moved_shown_and_removed(app, api):
    client = sign_in(app, ALICE)
    token = models_csrf(client)
    answer = client.post("/models/digits-alice/1/alias",
                         data={"csrf_token": token, "alias": "production"})
    assert answer.status_code == 303
    assert answer.headers["location"] == "/models#model-digits-alice"
    rows = {m["version"]: m for m in client.get("/api/models").json()["models"]
            if m["name"] == "digits-alice"}
    assert rows[1]["aliases"] == ["production"] and rows[2]["aliases"] == []
    client.post("/models/digits-alice/2/alias", data={"csrf_token": token,
                                                      "alias": "production"})
    rows = {m["version"]: m for m in client.get("/api/models").json()["models"]
            if m["name"] == "digits-alice"}
    assert rows[1]["aliases"] == [] and rows[2]["aliases"] == ["production"]
    answer = client.post("/models/digits-alice/aliases/production/delete",
                         data={"csrf_token": token})
    assert answer.status_code == 303
    assert all(not m.aliases for m in api.models)


def test_an_empty_alias_is_refused_with_its_field(app, api):
    client = sign_in(app, ALICE)
    answer = client.post("/models/digits-alice/1/alias",
                         data={"csrf_token": models_csrf(client), "alias": " "})
    assert answer.status_code == 400 and alert_of(answer.text) == "alias: name the alias"


def test_a_version_is_deleted_but_not_while_it_is_served(app, api):
    client = sign_in(app, ALICE)
    token = models_csrf(client)
    served = client.post("/models/digits-alice/1/delete", data={"csrf_token": token})
    assert served.status_code == 409
    assert "served by endpoint 'ep-alice'" in alert_of(served.text)
    assert '<a href="/models">Back to the models</a>' in served.text
    answer = client.post("/models/digits-alice/2/delete", data={"csrf_token": token})
    assert answer.status_code == 303
    assert [m.version for m in api.models if m.name == "digits-alice"] == [1]
    assert client.post("/models/digits-alice/0/delete",
                       data={"csrf_token": token}).status_code == 400


@pytest.mark.parametrize("path,data", [
    ("/models/digits-alice/2/alias", {"alias": "staging"}),
    ("/models/digits-alice/2/delete", {}),
    ("/models/digits-alice/aliases/staging/delete", {}),
])
def test_every_model_form_needs_the_csrf_token(app, api, path, data):
    api.models[1].aliases.append("staging")
    client = sign_in(app, ALICE)
    for token in ({}, {"csrf_token": "forged"}):
        assert client.post(path, data={**data, **token}).status_code == 403
    assert [m.version for m in api.models if m.name == "digits-alice"] == [1, 2]
    assert list(api.models[1].aliases) == ["staging"]


@pytest.mark.parametrize("path,data", [
    ("/models/digits-alice/2/alias", {"alias": "mine"}),
    ("/models/digits-alice/2/delete", {}),
    ("/models/digits-alice/aliases/staging/delete", {}),
])
def test_another_user_cannot_alias_or_delete_the_first_users_versions(app, api, path, data):
    api.models[1].aliases.append("staging")
    bob = sign_in(app, BOB)
    answer = bob.post(path, data={**data, "csrf_token": models_csrf(bob)})
    message = alert_of(answer.text)
    assert answer.status_code == 404 and ("not found" in message or "no alias" in message)
    assert [m.version for m in api.models if m.name == "digits-alice"] == [1, 2]
    assert list(api.models[1].aliases) == ["staging"]
    assert "digits-alice" not in bob.get("/api/models").text
