"""The web console in a real browser (Debian's chromium, Playwright) against the real local
stack: sign in with the one-time link and with tokens, watch a job's curve grow as its epochs
arrive, compare two finished jobs, cancel a job with its button, see none of another user's
jobs, submit a spec on the New job page (a wrong field named by its path), alias and delete
its model version and delete the job, and the refusals (a wrong token, a POST without its
CSRF token). Measured and printed:
how fast a page of 200 jobs renders, and how soon after an epoch is reported its point is
drawn. Each page is saved as a screenshot (conftest.SHOTS)."""
from __future__ import annotations

import re
import statistics
import threading
import time

import pytest
import yaml
from google.protobuf.json_format import MessageToDict
from typer.testing import CliRunner

from tests.integration.helpers import example
from trainserve.client import TERMINAL_STATES

pytestmark = pytest.mark.e2e

WIDE, NARROW = {"width": 1280, "height": 860}, {"width": 420, "height": 860}
# ~0.3 s an epoch on this machine: the page sees most epochs arrive live (a small learning
# rate: curves that take a few epochs to fall).
SLOW = dict(dataset={"num_samples": 16000}, training={"epochs": 30}, optimizer={"lr": 0.002})


def sign_in(browser, base: str, token: str, viewport=WIDE):
    """A new browser context (its own cookies) signed in with `token` through the form."""
    context = browser.new_context(viewport=viewport, base_url=base)
    page = context.new_page()
    page.goto("/signin")
    page.get_by_label("Job API token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/jobs$"))
    return page


def wait_done(sdk, job_id: str, timeout: float = 240):
    job = sdk.wait(job_id, timeout=timeout)
    assert job.state in TERMINAL_STATES
    return job


def record(shots, line: str) -> None:
    """Print a measurement and keep it beside the screenshots (measurements.txt)."""
    print("\n" + line)
    with open(shots / "measurements.txt", "a") as f:
        f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")


def until(page, predicate: str, timeout: float = 60) -> None:
    """Poll `predicate` (a JS function) until it is true. Not `wait_for_function`, which
    evaluates a string with eval(): the console's CSP forbids that, as it should."""
    deadline = time.time() + timeout
    while not page.evaluate(predicate):
        assert time.time() < deadline, f"not true after {timeout} s: {predicate}"
        time.sleep(0.1)


def jobs_rows(page) -> list[str]:
    until(page, "() => document.body.dataset.rendered === 'jobs'")
    return page.eval_on_selector_all("#jobs tbody tr", "rows => rows.map(r => r.dataset.id)")


@pytest.fixture(scope="module")
def base(stack) -> str:
    return stack.config.console_url


@pytest.fixture(scope="module")
def finished(users):
    """Alice's two small jobs, finished: (lr 0.05, no dropout), (lr 0.01, dropout 0.2),
    labelled pair=yes; submitted first so they train while other tests run."""
    sdk = users["alice"].sdk
    jobs = [sdk.submit(example("xor_mlp", name=f"pair-{i}", labels={"pair": "yes"},
                               training={"epochs": 4}, optimizer={"lr": lr},
                               model={"mlp": {"dropout": d}}))
            for i, (lr, d) in enumerate(((0.05, 0.0), (0.01, 0.2)))]
    return jobs


@pytest.fixture(scope="module")
def alice(playwright_browser, base, users, finished):
    page = sign_in(playwright_browser, base, users["alice"].token)
    yield page
    page.context.close()


def test_the_one_time_link_signs_in_as_the_local_admin_once(playwright_browser, stack, base,
                                                            shots):
    from trainserve.cli.main import app
    result = CliRunner().invoke(app, ["console", "--state-dir", str(stack.config.state_dir)])
    assert result.exit_code == 0, result.output
    link = result.stdout.strip()
    assert link.startswith(base + "/signin/")

    context = playwright_browser.new_context(viewport=WIDE)
    page = context.new_page()
    page.goto(link)
    page.wait_for_url(base + "/jobs")
    assert page.locator(".who .badge").inner_text() == "admin"
    jobs_rows(page)
    cookie = next(c for c in context.cookies() if c["name"] == "ts_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert page.evaluate("() => document.cookie") == ""  # not for scripts
    # The CSP holds: an inline script put into the page does not run.
    assert page.evaluate("() => { const s = document.createElement('script'); "
                         "s.textContent = 'window.inlineRan = true'; document.body.append(s); "
                         "return window.inlineRan === true; }") is False
    # The same link again, in another browser: used up.
    other = playwright_browser.new_context().new_page()
    answer = other.goto(link)
    assert answer.status == 403 and other.get_by_text("used already").is_visible()
    other.context.close()
    context.close()


def test_a_wrong_token_is_refused(playwright_browser, base, shots):
    page = playwright_browser.new_context(viewport=WIDE).new_page()
    page.goto(base + "/signin")
    page.screenshot(path=shots / "signin.png")
    page.get_by_label("Job API token").fill("not-a-token")
    with page.expect_response(lambda r: r.url.endswith("/signin")) as answer:
        page.get_by_role("button", name="Sign in").click()
    assert answer.value.status == 401
    assert page.get_by_role("alert").inner_text() == "The job API did not accept this token."
    assert page.goto(base + "/api/jobs").status == 401
    page.context.close()


def test_a_jobs_curve_grows_as_its_epochs_arrive(alice, users, shots):
    sdk = users["alice"].sdk
    job = sdk.submit(example("xor_mlp", name="live-xor", labels={"course": "week1"}, **SLOW))
    reported: dict[int, float] = {}  # epoch -> when the worker reported it (its event time)

    def watch():
        for event in sdk.watch(job.id):
            if event.HasField("epoch"):
                reported[event.epoch.epoch] = event.time.ToNanoseconds() / 1e9
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()

    alice.goto(f"/jobs/{job.id}")
    loss = alice.locator('figure.chart[data-metric="loss"] > svg')
    loss.wait_for(timeout=120_000)
    seen = [int(loss.get_attribute("data-points"))]
    deadline = time.time() + 120
    while time.time() < deadline and alice.locator("#job-state").inner_text() != "succeeded":
        points = int(loss.get_attribute("data-points"))
        if points != seen[-1]:
            seen.append(points)
        if len(seen) == 4:
            alice.screenshot(path=shots / "job-running.png")
        time.sleep(0.1)
    assert len(seen) >= 4 and seen == sorted(seen), seen  # it grew, point by point
    watcher.join(60)
    alice.locator("#plots img").first.wait_for(timeout=60_000)
    until(alice, "() => [...document.querySelectorAll('#plots img')].every("
                 "i => i.complete && i.naturalWidth > 0)")
    assert int(loss.get_attribute("data-points")) == 2 * 30  # train_loss and val_loss
    assert alice.locator("#job-progress").get_attribute("value") == "30"
    assert "test_accuracy" in alice.locator("#metrics").inner_text()
    assert alice.locator("#logs").inner_text().strip() and "[0]" in alice.locator("#logs").inner_text()
    assert "name: live-xor" in alice.locator("#spec").inner_text()
    assert alice.locator("#cancel-form").is_hidden()
    alice.screenshot(path=shots / "job.png", full_page=True)

    drawn = alice.evaluate("window.tsEpochsDrawn")
    latencies = [d["at"] / 1000 - reported[d["epoch"]] for d in drawn if d["epoch"] in reported]
    assert len(latencies) >= 3, (drawn, reported)
    record(shots, f"curve drawn after the epoch event: {len(latencies)} live epochs, median "
                  f"{statistics.median(latencies) * 1000:.0f} ms, max "
                  f"{max(latencies) * 1000:.0f} ms")
    assert statistics.median(latencies) < 1.0 and max(latencies) < 1.5, latencies


def test_two_finished_jobs_compare_side_by_side(alice, users, finished, shots):
    for job in finished:
        assert wait_done(users["alice"].sdk, job.id).state == 3  # SUCCEEDED
    alice.goto("/jobs?label=pair=yes")
    assert sorted(jobs_rows(alice)) == sorted(j.id for j in finished)
    for job in finished:
        alice.get_by_label(f"Select job {job.id} to compare").check()
    alice.get_by_role("button", name="Compare selected").click()
    until(alice, "() => document.body.dataset.rendered === 'compare'")
    rows = alice.locator("#cmp-diff tbody tr")
    assert sorted(rows.evaluate_all("rs => rs.map(r => r.dataset.path)")) == [
        "model.mlp.dropout", "name", "optimizer.lr"]
    lr = alice.locator('#cmp-diff tr[data-path="optimizer.lr"]')
    values = lr.locator("td").evaluate_all("tds => tds.map(td => td.firstChild.textContent)")
    assert sorted(values) == ["0.01", "0.05"]
    assert lr.locator("mark").all_inner_texts() == values[1:]  # not the first job's value
    charts = alice.locator("#cmp-curves figure.chart")
    assert charts.count() >= 4  # every metric: losses, accuracies, lr
    legend = alice.locator('#cmp-curves figure[data-metric="val_loss"] .legend li')
    assert legend.count() == 2
    assert "★" in alice.locator("#cmp-metrics").inner_text()
    alice.screenshot(path=shots / "compare.png", full_page=True)


def test_a_job_is_cancelled_with_its_button(alice, users, shots):
    sdk = users["alice"].sdk
    job = sdk.submit(example("xor_mlp", name="to-cancel", dataset={"num_samples": 200000},
                             training={"epochs": 500}))
    alice.goto(f"/jobs/{job.id}")
    alice.get_by_role("button", name="Cancel job").click()
    alice.wait_for_url(re.compile(rf"/jobs/{job.id}$"))
    assert wait_done(sdk, job.id, timeout=120).state == 5  # CANCELLED
    alice.locator("#job-state", has_text="cancelled").wait_for(timeout=30_000)
    assert alice.locator("#cancel-form").is_hidden()


def test_a_post_without_its_csrf_token_is_refused(alice, users):
    sdk = users["alice"].sdk
    job = sdk.submit(example("xor_mlp", name="kept", training={"epochs": 1}))
    for form in ({}, {"csrf_token": "forged"}):
        answer = alice.request.post(f"/jobs/{job.id}/cancel", form=form)
        assert answer.status == 403, form
    assert sdk.get_job(job.id).state not in (5,)  # not cancelled by those
    assert alice.request.post("/signout", form={}).status == 403
    assert alice.request.get("/api/jobs").status == 200  # still signed in


def test_another_user_sees_none_of_the_first_users_jobs(playwright_browser, base, users,
                                                        finished, alice, shots):
    alice.goto("/jobs")
    assert set(j.id for j in finished) <= set(jobs_rows(alice))
    alice.screenshot(path=shots / "jobs.png")
    alice.set_viewport_size(NARROW)
    alice.screenshot(path=shots / "jobs-narrow.png", full_page=True)
    alice.goto(f"/jobs/{finished[0].id}")
    alice.locator('figure.chart[data-metric="loss"]').wait_for()
    alice.screenshot(path=shots / "job-narrow.png", full_page=True)
    alice.set_viewport_size(WIDE)

    bob = sign_in(playwright_browser, base, users["bob"].token)
    assert jobs_rows(bob) == []
    assert bob.locator("#jobs-empty").is_visible()
    assert bob.request.get("/api/jobs").json()["jobs"] == []
    answer = bob.goto(f"/jobs/{finished[0].id}")
    assert answer.status == 404
    assert bob.request.get(f"/api/jobs/{finished[0].id}/curves").status == 404
    bob.context.close()


def test_a_spec_is_submitted_from_the_new_job_page(alice, users, shots):
    """The New job page: a wrong field named by its path (the spec kept), then the spec
    picked as a file and submitted; the job's page follows it to `succeeded`. Its model
    version gets an alias and is deleted from the models page; then the job is deleted
    (refused while the version it registered was still there)."""
    sdk = users["alice"].sdk
    spec = example("xor_mlp", name="from-browser", training={"epochs": 3})
    text = yaml.safe_dump(MessageToDict(spec, preserving_proto_field_name=True),
                          sort_keys=False)
    alice.goto("/jobs")
    alice.locator("main").get_by_role("link", name="New job").click()
    alice.wait_for_url(re.compile(r"/jobs/new$"))
    box = alice.get_by_label("Spec (YAML or JSON)")
    wrong = text.replace("training:", "trainin:", 1)
    box.fill(wrong)
    alice.get_by_role("button", name="Submit").click()
    assert alice.get_by_role("alert").inner_text().startswith("spec.trainin: unknown field")
    assert box.input_value() == wrong and box.get_attribute("aria-invalid") == "true"
    alice.screenshot(path=shots / "new-job-error.png", full_page=True)

    alice.get_by_label("Spec file").set_input_files(
        files=[{"name": "xor.yaml", "mimeType": "text/yaml", "buffer": text.encode()}])
    until(alice, "() => document.getElementById('spec').value.includes('training:')")
    alice.get_by_role("button", name="Submit").click()
    alice.wait_for_url(re.compile(r"/jobs/(?!new$)[^/]+$"))
    job_id = alice.url.rsplit("/", 1)[1]
    alice.locator("#job-state", has_text="succeeded").wait_for(timeout=180_000)
    job = sdk.get_job(job_id)
    assert job.user == users["alice"].name and job.spec.name == "from-browser"
    assert job.model_version

    def accept(dialog):  # the delete buttons' confirm()
        dialog.accept()
    alice.on("dialog", accept)
    with alice.expect_navigation():
        alice.locator("#delete-form").get_by_role("button", name="Delete job").click()
    assert alice.locator("h1").inner_text() == "Not possible now"
    assert job.model_name in alice.get_by_role("alert").inner_text()

    alice.goto("/models")
    until(alice, "() => document.body.dataset.rendered === 'models'")
    row = alice.locator(f'section[data-model="{job.model_name}"] '
                        f'tr[data-version="{job.model_version}"]')
    row.get_by_label(f"Alias to point at {job.model_name} v{job.model_version}").fill("web")
    with alice.expect_navigation():
        row.get_by_role("button", name="Set alias").click()
    until(alice, "() => document.body.dataset.rendered === 'models'")
    assert row.locator(".alias-badge").inner_text() == "@web"
    assert sdk.get_model(job.model_name, alias="web").version == job.model_version
    alice.screenshot(path=shots / "models-alias.png", full_page=True)
    with alice.expect_navigation():
        row.get_by_role("button", name=f"Delete {job.model_name} v{job.model_version}").click()
    until(alice, "() => document.body.dataset.rendered === 'models'")
    assert row.count() == 0
    alice.goto(f"/jobs/{job_id}")
    alice.locator("#delete-form").get_by_role("button", name="Delete job").click()
    alice.wait_for_url(re.compile(r"/jobs$"))
    assert job_id not in jobs_rows(alice)
    alice.remove_listener("dialog", accept)


def test_per_layer_statistics_share_one_chart_per_statistic(alice, users):
    sdk = users["alice"].sdk
    job = sdk.submit(example("xor_mlp", name="inside", training={
        "epochs": 3, "diagnostics": {"gradients": True, "activations": True}}))
    assert wait_done(sdk, job.id).state == 3  # SUCCEEDED
    layers = {m.split("/", 1)[1] for m in sdk.curves(job.id)["metrics"] if "/" in m}
    assert layers, "no per-layer statistics"
    alice.goto(f"/jobs/{job.id}")
    chart = alice.locator('figure.chart[data-metric="grad_norm"]')
    chart.wait_for(timeout=60_000)
    assert chart.locator(".legend li").count() == len(
        [m for m in sdk.curves(job.id)["metrics"] if m.startswith("grad_norm/")])
    metrics = alice.locator("#curves figure.chart").evaluate_all(
        "fs => fs.map(f => f.dataset.metric)")
    assert not [m for m in metrics if "/" in m], metrics
    assert {"grad_norm", "act_mean", "act_std", "act_saturated", "loss"} <= set(metrics)


def test_a_page_of_200_jobs_renders_within_a_second(playwright_browser, stack, base, users,
                                                    shots):
    # The dispatcher stops first: the 200 jobs stay queued and nothing trains (the last
    # test of the module).
    stack.stop("dispatcher")
    sdk = users["dora"].sdk
    spec = example("xor_mlp", name="many", training={"epochs": 1})
    ids = {sdk.submit(spec).id for _ in range(200)}
    page = sign_in(playwright_browser, base, users["dora"].token)
    times = []
    for _ in range(3):
        start = time.perf_counter()
        page.goto("/jobs")
        assert set(jobs_rows(page)) == ids
        wall = time.perf_counter() - start
        mark = page.evaluate("performance.getEntriesByName('ts-jobs-rendered')[0].startTime")
        times.append((mark / 1000, wall))
    page.screenshot(path=shots / "jobs-200.png")
    page.context.close()
    rendered = [t for t, _ in times]
    record(shots, f"200-job page, navigation to the rendered table: "
                  f"{', '.join(f'{t * 1000:.0f} ms' for t in rendered)} (wall "
                  f"{', '.join(f'{w * 1000:.0f} ms' for _, w in times)})")
    assert statistics.median(rendered) < 1.0, times
