"""bench/: the one summary table (rows, verdicts, all.json), the training-throughput bench's
loops on a tiny run, and bench/gpu.py (a CPU smoke run; the real run is marked `gpu`)."""
from __future__ import annotations

import json
import math

import pytest

from bench import common, gpu, run as bench_run, train as bench_train


def test_meets_reads_the_target():
    assert common.meets(0.2, "<= 0.25") and not common.meets(0.3, "<= 0.25")
    assert common.meets(600, ">= 500") and not common.meets(400, ">= 500")
    assert common.meets(None, "<= 1") is None and common.meets(1.0, None) is None


def test_row_judges_the_ratio_or_the_figure():
    r = common.row("a", 1.0, 4.0, "<= 0.25")
    assert r["ratio"] == 0.25 and r["met"] is True and r["target"] == "<= 0.25"
    r = common.row("b", 2.5, 10.0, "<= 2", on="ours")
    assert r["met"] is False and r["target"] == "<= 2 abs"
    r = common.row("c", 3.0)
    assert r["ratio"] is None and "met" not in r


def test_summary_has_every_bench_and_writes_all_json(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bench_run, "RESULTS", tmp_path)
    results = {"x": [common.row("fast", 1.0, 2.0, "<= 0.6")], "y": None}
    rows = bench_run.summary_rows(results)
    assert rows[0]["figure"] == "x: fast" and rows[0]["met"] is True
    assert rows[1]["met"] is False and "FAILED" in rows[1]["figure"]
    doc = json.loads(bench_run.write_all(rows, ["x", "y"], 1.0).read_text())
    assert (doc["targets"], doc["met"], len(doc["rows"])) == (2, 1, 2)
    common.print_table("t", rows)
    assert "x: fast" in capsys.readouterr().out


def test_run_refuses_unknown_benches():
    with pytest.raises(SystemExit):
        bench_run.main(["nope"])
    assert "gpu" not in bench_run.default_benches() or gpu.cuda_available()


def test_train_bench_loops_measure_the_same_job():
    spec = bench_train.digits_spec("MLP", epochs=2)
    for rates in (bench_train.ours(spec), bench_train.ceiling(spec, 2),
                  bench_train.course_loop(spec, 2)):
        assert len(rates) == 1 and rates[0] > 0 and math.isfinite(rates[0])


def test_the_course_loop_builds_its_optimizer_as_a_student_does():
    spec = bench_train.digits_spec("LeNet-5", epochs=2)
    ours, student = bench_train._setup(spec)[1], bench_train._setup(spec, student_optimizer=True)[1]
    assert ours.defaults["fused"] is True and not student.defaults["fused"]
    assert student.defaults["lr"] == ours.defaults["lr"] == spec.optimizer.lr
    assert bench_train.ceiling(spec, 2, student_optimizer=True)[0] > 0


def _tiny_workloads():
    return {"LeNet-5": gpu.WORKLOADS["LeNet-5, digits 8x8"] | {"batch": 128},
            "transformer": {"dataset": {"name": "sine", "num_samples": 256,
                                        "sequence_length": 8},
                            "model": {"transformer": {"d_model": 16, "num_heads": 2,
                                                      "num_layers": 1}}, "batch": 64}}


def test_gpu_bench_smoke_on_cpu():
    rows = gpu.run("cpu", 2, _tiny_workloads(), images=64)
    rates = [r for r in rows if r["figure"].endswith("samples/s")]
    assert len(rates) == 4 and all(r["ours"] > 0 and r["baseline"] > 0 for r in rates)
    assert {r["target"] for r in rates} == {">= 0.9"}


@pytest.mark.gpu
@pytest.mark.skipif(not gpu.cuda_available(), reason="needs a CUDA GPU")
def test_gpu_bench_on_cuda():
    rows = gpu.run("cuda:0", 3, _tiny_workloads() | {
        "ResNet": gpu.WORKLOADS["ResNet small, synthetic 28x28"]}, images=1024)
    mem = [r for r in rows if r["figure"].endswith("peak GPU MiB")]
    assert mem and all(r["ours"] > 0 for r in mem)


def test_gpu_bench_leaves_no_dataset_registered():
    from trainserve.training.datasets import DATASETS
    gpu.run("cpu", 2, {}, images=16)
    assert gpu.IMAGES28 not in DATASETS.names()


def test_results_record_what_they_were_measured_on(tmp_path, monkeypatch):
    monkeypatch.setattr(common, "RESULTS", tmp_path)
    doc = json.loads(common.save("x", [common.row("a", 1.0, 2.0)], {"repeats": 3}).read_text())
    head = __import__("subprocess").run(["git", "rev-parse", "HEAD"], cwd=common.ROOT,
                                        capture_output=True, text=True).stdout.strip()
    assert doc["commit"] == head and isinstance(doc["dirty"], bool)
    assert doc["versions"]["torch"] and doc["versions"]["ray"]
    assert doc["machine"]["cpus"] >= 1 and doc["repeats"] == 3
    assert common.spread([0.5, 0.25, 1.0]) == "0.25-1 over 3"
