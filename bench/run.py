"""Run the benchmarks in bench/ (all by default, or those named) and print ONE table of every
figure — ours, baseline, ratio, target, met — also written to bench/results/all.json (each
bench still writes its own bench/results/<name>.json).

    .venv/bin/python bench/run.py                # spine, train, tune, serve, servecost, ddpcost,
                                                 # submit, console (+ gpu with CUDA)
    .venv/bin/python bench/run.py cluster        # only when named: ranks and the idle stack
    .venv/bin/python bench/run.py scale soak     # only when named: many models, replicas; a soak
    .venv/bin/python bench/run.py train submit   # some of them
    .venv/bin/python bench/run.py --markdown     # every bench's latest results as Markdown
    .venv/bin/python bench/run.py --readme       # ... written into bench/README.md

Every run ends by regenerating bench/README.md's results from bench/results/<name>.json
(bench/report.py), so the README never holds a typed figure.
"""
from __future__ import annotations

import json
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import (cluster, common, console, ddpcost, gpu, report, scale,  # noqa: E402
                   serve, servecost, soak, spine, submit, train, tune)
from bench.common import RESULTS, print_table, provenance  # noqa: E402

BENCHES = {"spine": spine.main, "train": train.main, "tune": tune.main, "serve": serve.main,
           "servecost": servecost.main, "ddpcost": ddpcost.main,
           "submit": submit.main, "console": console.main, "cluster": cluster.main,
           "scale": scale.main, "soak": soak.main, "gpu": gpu.main}
# Run only when named: cluster starts a second, two-node Ray cluster (about 6 minutes); scale
# trains and deploys 68 models on two stacks (about 6 minutes); soak runs for 10 minutes.
NAMED_ONLY = ("cluster", "scale", "soak")


def default_benches() -> list[str]:
    """Every bench but those in NAMED_ONLY; gpu only where CUDA is (its CPU smoke run is
    `bench/gpu.py --device cpu`)."""
    return [n for n in BENCHES
            if n not in NAMED_ONLY and (n != "gpu" or gpu.cuda_available())]


def summary_rows(results: dict[str, list[dict] | None]) -> list[dict]:
    """One list of rows, each figure prefixed with its bench's name; a bench that failed
    gives one row saying so."""
    out = []
    for name, rows in results.items():
        if rows is None:
            out.append({"figure": f"{name}: FAILED (see the log above)", "ours": float("nan"),
                        "met": False})
            continue
        out += [r | {"figure": f"{name}: {r['figure']}", "bench": name} for r in rows]
    return out


def write_all(rows: list[dict], names: list[str], seconds: float) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "all.json"
    targets = [r for r in rows if r.get("met") is not None]
    path.write_text(json.dumps({
        "benches": names, "time": time.time(), "seconds": round(seconds, 1), **provenance(),
        "targets": len(targets), "met": sum(bool(r["met"]) for r in targets),
        "rows": rows}, indent=2, default=str))
    return path


def main(argv: list[str]) -> list[dict]:
    if argv in (["--markdown"], ["--readme"]):
        if argv == ["--readme"]:
            print("written:", report.write_readme())
        else:
            print(report.results_markdown())
        return []
    names = argv or default_benches()
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        raise SystemExit(f"unknown bench {unknown}; known: {', '.join(BENCHES)}")
    t0, results = time.perf_counter(), {}
    for name in names:
        common.LOAD_AT_START = common.load_average()
        try:
            results[name] = BENCHES[name]()
        except Exception:  # noqa: BLE001 - one failed bench must not lose the others' rows
            traceback.print_exc()
            results[name] = None
    rows = summary_rows(results)
    targets = [r for r in rows if r.get("met") is not None]
    print_table(f"ALL: {len(targets)} targets, {sum(bool(r['met']) for r in targets)} met "
                f"({', '.join(names)})", rows)
    print("results:", write_all(rows, names, time.perf_counter() - t0))
    print("README:", report.write_readme())
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
