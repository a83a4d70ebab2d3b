"""The web console in a real browser (Debian's chromium, Playwright) on the local stack,
each figure against the job API's own answer to the same question, in the same run:

- a page of 200 jobs: navigation to the rendered table, against `ListJobs` of the same 200
  jobs through the SDK (the data the page shows, without the page); 7 of each, interleaved;
- a curve point: from the worker's epoch event to its point drawn on the job page, against
  the same event arriving on the SDK's `WatchJob` stream, for the same epochs of one job.

    .venv/bin/python -m bench.console      (or ./dev.sh bench console; about 2 minutes)
"""
from __future__ import annotations

import re
import statistics
import threading
import time

from bench.common import local_stack, print_table, row, save, spread

PAGE_REPEATS = 7
PAGE_JOBS = 200
WIDE = {"width": 1280, "height": 860}


def chromium(pw):
    from tests.e2e.conftest import chromium_binary  # the one place that finds Debian's
    binary = chromium_binary()
    if binary is None:
        raise RuntimeError("Debian's chromium is not installed (apt-get install chromium)")
    return pw.chromium.launch(executable_path=binary, headless=True)


def signed_in(browser, base: str, token: str):
    page = browser.new_context(viewport=WIDE, base_url=base).new_page()
    page.goto("/signin")
    page.get_by_label("Job API token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/jobs$"))
    return page


def until(page, predicate: str, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not page.evaluate(predicate):
        if time.time() > deadline:
            raise TimeoutError(predicate)
        time.sleep(0.05)


def curve_latency(page, sdk, spec) -> tuple[list[float], list[float]]:
    """(seconds from each epoch event to its point on the page, to its arrival on WatchJob)."""
    job = sdk.submit(spec)
    reported, streamed = {}, {}

    def watch():
        for event in sdk.watch(job.id):
            raw = getattr(event, "raw", event)
            if raw.HasField("epoch"):
                streamed[raw.epoch.epoch] = time.time()
                reported[raw.epoch.epoch] = raw.time.ToNanoseconds() / 1e9
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    page.goto(f"/jobs/{job.id}")
    until(page, "() => document.querySelector('#job-state')?.textContent === 'succeeded'")
    watcher.join(60)
    drawn = {d["epoch"]: d["at"] / 1000 for d in page.evaluate("window.tsEpochsDrawn")}
    both = sorted(set(drawn) & set(streamed))
    if len(both) < 5:
        raise RuntimeError(f"only {len(both)} epochs seen live by both sides")
    return ([drawn[e] - reported[e] for e in both], [streamed[e] - reported[e] for e in both])


def page_of_jobs(page, sdk) -> tuple[list[float], list[float]]:
    """(seconds to the rendered 200-job table, seconds to ListJobs' 200 jobs), interleaved."""
    ours, base = [], []
    for _ in range(PAGE_REPEATS):
        start = time.perf_counter()
        page.goto("/jobs")
        until(page, "() => document.body.dataset.rendered === 'jobs'")
        shown = page.eval_on_selector_all("#jobs tbody tr", "rows => rows.length")
        ours.append(time.perf_counter() - start)
        start = time.perf_counter()
        listed = sdk.list_jobs(page_size=PAGE_JOBS)
        base.append(time.perf_counter() - start)
        if shown < PAGE_JOBS or len(listed.jobs) < PAGE_JOBS:
            raise RuntimeError(f"the page shows {shown} jobs and ListJobs {len(listed.jobs)}")
    return ours, base


def main() -> list[dict]:
    from playwright.sync_api import sync_playwright

    from bench.spine import _spec
    from trainserve.client import Client
    from trainserve.core.pb import auth_pb2

    # No queued-jobs limit: the 200 jobs of the page are one user's.
    with local_stack(user_max_queued=0) as stack, sync_playwright() as pw:
        admin = Client(stack.config.api_address,
                       token=stack.config.admin_token_path.read_text().strip())
        token = admin.call_auth("CreateToken", auth_pb2.CreateTokenRequest(user="bench")).token
        sdk = Client(stack.config.api_address, token=token)
        browser = chromium(pw)
        page = signed_in(browser, stack.config.console_url, token)
        # ~0.3 s an epoch: the page sees most epochs arrive live.
        slow = _spec("xor_mlp", dataset={"num_samples": 16000}, training={"epochs": 30})
        drawn, streamed = curve_latency(page, sdk, slow)
        stack.stop("dispatcher")  # the 200 jobs stay queued: nothing trains under the page
        one = _spec("xor_mlp", training={"epochs": 1})
        for _ in range(PAGE_JOBS):
            sdk.submit(one)
        rendered, listed = page_of_jobs(page, sdk)
        browser.close()
    rows = [
        row("200-job page: navigation -> rendered table (s)", statistics.median(rendered),
            statistics.median(listed), "<= 1", on="ours",
            note=f"baseline: ListJobs of the same 200 jobs via the SDK; {PAGE_REPEATS} each, "
                 f"interleaved; ours {spread(rendered)}, baseline {spread(listed)}"),
        row("curve: epoch event -> point drawn on the job page (s)",
            statistics.median(drawn), statistics.median(streamed), "<= 1", on="ours",
            note=f"baseline: the same events on the SDK's WatchJob stream; {len(drawn)} "
                 f"epochs; ours {spread(drawn)}, baseline {spread(streamed)}"),
    ]
    print_table("console (real chromium, local stack)", rows)
    print("results:", save("console", rows, {"page_repeats": PAGE_REPEATS,
                                              "page_jobs": PAGE_JOBS}))
    return rows


if __name__ == "__main__":
    main()
