"""A clinical table end to end on the real stack: upload the example CSV (binary and
categorical columns, blank / NA / NaN cells), train examples/clinical/mlp.yaml, read the
clinical metrics and the stored encoding from the registry, deploy, query the endpoint with
raw rows, and export the model: the file answers those rows as the endpoint does."""
from __future__ import annotations

import math

import httpx
import numpy as np
import pytest

from tests.integration.helpers import EXAMPLES, admin_token, example
from trainserve.client import Client
from trainserve.core import errors
from trainserve.core.pb import job_pb2

pytestmark = pytest.mark.integration

CSV = EXAMPLES / "clinical" / "clinical.csv"
ROWS = [["63", "M", "", "1.6", "current", "3"],      # a blank bmi
        ["35", "F", "22.0", "NA", "never", "1"],     # creatinine written NA
        ["71", "F", "31.5", "0.9", "former", "2"]]


@pytest.fixture(scope="module")
def sdk(stack):
    with Client(stack.config.api_address, retry_for=0) as c:
        yield c


@pytest.fixture(scope="module")
def trained(sdk):
    ds = sdk.upload_dataset(CSV, "clinical")
    spec = example("clinical/mlp", training={"epochs": 25})
    job = sdk.submit(spec)
    done = sdk.wait(job.id, timeout=300)
    assert done.state == job_pb2.JOB_STATE_SUCCEEDED, done.message
    return ds, done


def test_the_upload_describes_each_column(trained):
    ds, _ = trained
    cols = {c.name: c for c in ds.schema.columns}
    assert [cols[n].kind for n in ("age", "sex", "bmi", "creatinine", "smoker", "stage")] == [
        "numeric", "binary", "numeric", "numeric", "categorical", "numeric"]
    assert cols["creatinine"].missing > 0 and cols["bmi"].missing > 0
    assert cols["age"].missing == 0 and list(cols["sex"].classes) == ["F", "M"]


def test_missing_values_are_refused_with_advice_unless_the_spec_says_what_to_do(sdk, trained):
    spec = example("clinical/mlp")
    spec.dataset.ClearField("missing")
    spec.dataset.ClearField("columns")
    spec.dataset.missing_indicators = False
    with pytest.raises(errors.InvalidArgument) as e:
        sdk.submit(spec)
    assert e.value.field == "spec.dataset.missing"
    assert "'bmi'" in str(e.value) and "'creatinine'" in str(e.value)
    assert "impute" in str(e.value) and "not numeric" not in str(e.value)


def test_the_job_reports_clinical_metrics_and_stores_the_encoding(sdk, trained):
    _, done = trained
    m = done.metrics
    assert m["test_accuracy"] > 0.65, dict(m)   # the majority class is 0.60
    for key in ("test_disease_sensitivity", "test_disease_specificity", "test_disease_ppv",
                "test_disease_npv", "test_healthy_sensitivity", "test_brier", "test_ece",
                "test_specificity", "test_npv"):
        assert math.isfinite(m[key]), key
    assert m["test_disease_tp"] + m["test_disease_fn"] == \
        m["test_healthy_tn"] + m["test_healthy_fp"]        # the diseased, counted both ways
    mv = sdk.get_model(done.model_name, done.model_version)
    assert mv.metrics["test_brier"] == m["test_brier"]
    columns = {c.name: c for c in mv.preprocessing.columns}
    assert list(columns) == ["age", "sex", "bmi", "creatinine", "smoker", "stage"]
    assert list(columns["stage"].categories) == ["1", "2", "3"]
    assert columns["creatinine"].indicator and 0.5 < columns["creatinine"].fill < 1.5
    assert (columns["creatinine"].missing, columns["bmi"].missing) == ("median", "mean")
    assert (columns["sex"].kind, columns["sex"].positive) == ("binary", "M")
    assert (mv.inputs[0].datatype, list(mv.inputs[0].shape)) == ("BYTES", [-1, 6])


def test_the_endpoint_answers_raw_rows(sdk, stack, trained):
    _, done = trained
    endpoint = "clinical-raw"
    sdk.deploy(done.model_name, done.model_version, name=endpoint, timeout=180)
    try:
        http = stack.config.serve_http
        out = sdk.predict(endpoint, ROWS, http=http, datatype="BYTES")
        assert out["probabilities"].shape == (3, 2)
        np.testing.assert_allclose(out["probabilities"].sum(axis=1), 1, rtol=1e-5)
        assert set(out["class_name"].tolist()) <= {"disease", "healthy"}
        v1 = httpx.post(f"http://{http}/v1/models/{endpoint}:predict",
                        json={"instances": ROWS}, timeout=60)
        assert v1.status_code == 200, v1.text
        assert [p["class_name"] for p in v1.json()["predictions"]] == \
            out["class_name"].tolist()
        with pytest.raises(errors.InvalidArgument, match="'old' is not a number"):
            sdk.predict(endpoint, [["old", "M", "", "1.6", "current", "3"]], http=http,
                        datatype="BYTES")
        with pytest.raises(errors.InvalidArgument, match="BYTES"):
            sdk.predict(endpoint, [[63, 1, 27, 1.6, 1, 3]], http=http)  # numbers: refused
        exported_files_answer_as_the_endpoint(sdk, done, out["probabilities"])
        in_the_console(stack, endpoint, ROWS[0], out["class_name"][0])
    finally:
        sdk.undeploy(endpoint)


def exported_files_answer_as_the_endpoint(sdk, done, probabilities) -> None:
    """ExportModel's ONNX and TorchScript files take the same raw rows (blanks, NA) and
    answer the same probabilities as the deployed endpoint."""
    from trainserve.registry.export import run_exported
    for fmt in ("onnx", "torchscript"):
        data = sdk.export_model(done.model_name, done.model_version, format=fmt)
        probs, _ = run_exported(data, fmt, np.array(ROWS, dtype=object))
        np.testing.assert_allclose(probs, probabilities, rtol=1e-5, atol=1e-6, err_msg=fmt)


def in_the_console(stack, endpoint: str, row: list[str], expected: str) -> None:
    """The console's try-it panel builds its form from the stored columns (a menu of each
    categorical's categories, a text box per number, blank for missing) and gets the same
    answer as the SDK for the same raw row."""
    from tests.e2e.conftest import chromium_binary
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed (./dev.sh test installs it)")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_binary(), headless=True)
        page = browser.new_page(base_url=stack.config.console_url)
        page.goto("/signin")
        page.get_by_label("Job API token").fill(admin_token(stack.config))
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url("**/jobs")
        page.goto(f"/endpoints/{endpoint}")
        page.get_by_label("sex", exact=True).wait_for(timeout=60_000)
        assert page.get_by_label("stage", exact=True).locator("option").all_inner_texts() == [
            "(missing)", "1", "2", "3"]
        for name, cell in zip(["age", "sex", "bmi", "creatinine", "smoker", "stage"], row):
            field = page.get_by_label(name, exact=True)
            if field.evaluate("e => e.tagName") == "SELECT":
                field.select_option(cell)
            else:
                field.fill(cell)
        page.get_by_role("button", name="Send").click()
        page.locator("#answer-label").wait_for(timeout=30_000)
        assert page.locator("#answer-label").inner_text() == expected
        browser.close()
