"""The web console's searches, models, endpoints and datasets pages in a real browser
(Debian's chromium, Playwright) against the real local stack: upload a dataset and read its
description, follow a small search live (its trials table fills while it runs; the best
trial marked, parallel coordinates drawn, two trials' curves side by side), deploy a trained
digits model from its version, draw a digit on the pad and get a label, roll out a second
version and see the traffic split, the endpoint's requests in its serving metrics, and a
second user who sees none of it. A screenshot of each page (conftest.SHOTS)."""
from __future__ import annotations

import re
import time
import uuid

import pytest

from tests.e2e.test_console_browser import NARROW, WIDE, record, sign_in, until, wait_done
from tests.integration.helpers import example

pytestmark = pytest.mark.e2e
SUCCEEDED = 3


def submit_work(sdk, tag: str):
    """Two versions of a small digits CNN and a small ASHA search, submitted at once."""
    models = [sdk.submit(example("cnn_digits", name=f"digits-{tag}", training={"epochs": e}))
              for e in (4, 6)]
    search = sdk.submit(example("tune_digits_asha", name=f"search-{tag}",
                                training={"epochs": 4},
                                search={"num_samples": 4, "scheduler": {"grace_period": 1}}))
    return models, search


def upload_dataset(page, tmp_path, shots, tag: str) -> str:
    csv = tmp_path / "points.csv"
    csv.write_text("x,y,label\n" + "".join(f"{i},{i * i % 7},{'ab'[i % 2]}\n"
                                           for i in range(40)))
    name = f"points-{tag}"
    page.goto("/datasets")
    until(page, "() => document.body.dataset.rendered === 'datasets'")
    page.get_by_label("CSV or NPZ file").set_input_files(str(csv))
    page.get_by_label("Name").fill(name)
    page.get_by_label("Description").fill("forty points, two classes")
    page.get_by_role("button", name="Upload").click()
    page.locator(f'#dataset-detail section[data-dataset="{name}"]').wait_for(timeout=30_000)
    assert page.locator(f'#datasets tbody tr[data-dataset="{name}"]').is_visible()
    detail = page.locator("#dataset-detail").inner_text()
    assert "40 rows" in detail and "label" in detail and "forty points" in detail
    page.screenshot(path=shots / "datasets.png", full_page=True)
    return name


def follow_search(page, search_id: str, shots) -> None:
    """The trials table fills while the search runs, polled by the page."""
    page.goto("/searches")
    page.locator(f'#searches tbody tr[data-id="{search_id}"]').wait_for(timeout=30_000)
    page.goto(f"/searches/{search_id}")
    table = page.locator("#trials")
    seen, deadline = [], time.time() + 240
    while time.time() < deadline:
        state = page.locator("#search-state").inner_text()
        count = int(table.get_attribute("data-trials") or 0)
        if count and (not seen or count != seen[-1][1]):
            seen.append((state, count))
            if state == "running" and len(seen) == 1:
                page.screenshot(path=shots / "search-running.png", full_page=True)
        if state in ("succeeded", "failed", "cancelled") and page.evaluate(
                "() => window.tsSearchPolls > 0") and count:
            break
        time.sleep(0.2)
    assert any(state == "running" for state, _ in seen), seen  # the table filled live
    assert page.locator("#search-state").inner_text() == "succeeded", seen
    until(page, "() => document.querySelectorAll('#trials tbody tr').length === 4")
    best = page.locator("#trials tbody tr.best-row")
    assert best.count() == 1 and "★" in best.inner_text()
    assert page.locator("#parallel polyline.pc-line").count() >= 2
    for box in page.locator("#trials tbody input[type=checkbox]").all()[:2]:
        box.check()
    page.get_by_role("button", name="Curves of selected trials").click()
    legend = page.locator('#s-curves figure.chart[data-metric="val_accuracy"] .legend li')
    assert legend.count() == 2
    page.locator("#trials thead button", has_text="val_accuracy").click()
    page.screenshot(path=shots / "search.png", full_page=True)
    record(shots, f"search followed live: (state, trials shown) as the page polled: {seen}")


def draw_a_one(page) -> None:
    """A vertical stroke down the middle of the pad (mouse events, as a hand would); the
    pad must be in the viewport, where the mouse is, and the model's preview must show ink
    down the middle column and none in the corners."""
    pad = page.locator("canvas.pad")
    pad.scroll_into_view_if_needed()
    box = pad.bounding_box()
    x = box["x"] + box["width"] * 0.5
    page.mouse.move(x, box["y"] + box["height"] * 0.12)
    page.mouse.down()
    page.mouse.move(x, box["y"] + box["height"] * 0.88, steps=12)
    page.mouse.up()
    ink = page.evaluate("""() => {
        const c = document.querySelector('canvas.pad-preview');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        return Array.from({length: c.width * c.height}, (_, i) => 1 - d[i * 4] / 255);
    }""")
    side = int(len(ink) ** 0.5)
    middle = [ink[r * side + side // 2] + ink[r * side + side // 2 - 1] for r in range(side)]
    assert sum(v > 0.2 for v in middle) >= side // 2, ink  # the stroke registered
    assert ink[0] == ink[side - 1] == ink[-1] == 0, ink


def deploy_and_try(page, model: str, endpoint: str, shots) -> None:
    page.goto("/models")
    until(page, "() => document.body.dataset.rendered === 'models'")
    section = page.locator(f'section.model[data-model="{model}"]')
    assert section.locator("tbody tr[data-version]").count() == 2
    page.screenshot(path=shots / "models.png", full_page=True)
    assert "test_accuracy" in section.inner_text(), page.request.get("/api/models").json()
    row = section.locator('tr[data-version="1"]')
    row.get_by_label(f"Endpoint name for {model} v1").fill(endpoint)
    row.get_by_role("button", name="Deploy").click()
    page.wait_for_url(re.compile(rf"/endpoints/{endpoint}$"))
    until(page, "() => document.getElementById('main').dataset.state === 'ready'", 240)
    page.locator("canvas.pad").wait_for()
    draw_a_one(page)
    page.get_by_role("button", name="Send").click()
    page.locator("#answer-label").wait_for(timeout=30_000)
    label = page.locator("#answer-label").inner_text()
    assert label in [str(d) for d in range(10)], label
    assert page.locator("#try-answer .probs tbody tr").count() == 10
    page.screenshot(path=shots / "endpoint-try.png", full_page=True)
    record(shots, f"a drawn vertical stroke was read as {label}")


def roll_out(page, endpoint: str, shots) -> None:
    page.get_by_label("Version", exact=True).select_option("2")
    page.get_by_label("Percent of requests").fill("50")
    page.get_by_role("button", name="Roll out").click()
    page.wait_for_url(re.compile(rf"/endpoints/{endpoint}$"))
    until(page, "() => document.getElementById('split').dataset.split === '1:50,2:50'", 240)
    assert "version 2 (canary, ready) takes 50%" in page.locator("#split-text").inner_text()
    assert page.get_by_role("button", name="Promote the new version").is_visible()
    stats = {}
    deadline = time.time() + 60
    while time.time() < deadline and not stats.get("requests"):
        stats = page.request.get(f"/api/endpoints/{endpoint}/stats").json()
        time.sleep(1)
    assert stats["available"] and stats["requests"] >= 1, stats
    until(page, "() => Number(document.getElementById('traffic').dataset.requests) >= 1", 30)
    page.screenshot(path=shots / "endpoint.png", full_page=True)
    page.goto("/endpoints")
    page.locator(f'#endpoints tbody tr[data-endpoint="{endpoint}"]').wait_for()
    assert "v2 50%" in page.locator(f'#endpoints tr[data-endpoint="{endpoint}"]').inner_text()
    page.screenshot(path=shots / "endpoints.png")
    page.set_viewport_size(NARROW)
    page.goto(f"/endpoints/{endpoint}")
    until(page, "() => document.getElementById('split').dataset.split === '1:50,2:50'")
    page.screenshot(path=shots / "endpoint-narrow.png", full_page=True)
    page.set_viewport_size(WIDE)


def test_datasets_a_live_search_deploy_draw_and_roll_out(playwright_browser, stack, users,
                                                         shots, tmp_path):
    started = time.time()
    tag = uuid.uuid4().hex[:6]
    sdk = users["alice"].sdk
    models, search = submit_work(sdk, tag)
    base = stack.config.console_url
    page = sign_in(playwright_browser, base, users["alice"].token)
    dataset = upload_dataset(page, tmp_path, shots, tag)
    follow_search(page, search.id, shots)
    for job in models:
        assert wait_done(sdk, job.id).state == SUCCEEDED
    endpoint = f"digits-{tag}"
    deploy_and_try(page, f"digits-{tag}", endpoint, shots)
    roll_out(page, endpoint, shots)

    bob = sign_in(playwright_browser, base, users["bob"].token)
    for api in ("/api/searches", "/api/models", "/api/endpoints", "/api/datasets"):
        listed = bob.request.get(api).json()
        assert not any(listed[key] for key in listed if isinstance(listed[key], list)), api
    for path in (f"/searches/{search.id}", f"/endpoints/{endpoint}",
                 f"/api/datasets/{dataset}"):
        assert bob.request.get(path).status == 404, path
    bob.goto("/endpoints")
    until(bob, "() => document.body.dataset.rendered === 'endpoints'")
    assert bob.locator("#endpoints-empty").is_visible()
    bob.context.close()
    page.context.close()
    sdk.undeploy(endpoint)
    record(shots, f"manage pages test: {time.time() - started:.0f} s")
