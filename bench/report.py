"""bench/README.md's results, generated from bench/results/<name>.json and never typed.

Every bench writes its rows and what they were measured on (commit, versions, machine, load)
to its own JSON file; `results_markdown()` turns the files present into one section per bench,
and `write_readme()` puts them between the README's two markers. `bench/run.py` does that after
every run, and `bench/run.py --readme` on its own.
"""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from bench.common import RESULTS, ROOT

README = ROOT / "bench" / "README.md"
START, END = "<!-- bench:results:start -->", "<!-- bench:results:end -->"
ORDER = ("spine", "ddpcost", "train", "tune", "serve", "servecost", "submit", "console",
         "cluster", "scale", "soak", "gpu")


def _fmt(x) -> str:
    if x is None:
        return ""
    if isinstance(x, float):
        return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.3g}"
    return str(x)


def table(rows: list[dict]) -> str:
    lines = ["| figure | ours | baseline | ratio | spread | errors (ours / base) | target | met |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = "" if r.get("ratio") is None else f"{r['ratio']:.2f}"
        met = {True: "yes", False: "**no**"}.get(r.get("met"), "")
        lines.append(f"| {r['figure']} | {_fmt(r.get('ours'))} | {_fmt(r.get('baseline'))} | "
                     f"{ratio} | {r.get('spread') or ''} | {_fmt(r.get('errors'))} | "
                     f"{r.get('target') or ''} | {met} |")
    return "\n".join(lines)


def provenance_line(doc: dict) -> str:
    when = dt.datetime.fromtimestamp(doc["time"], dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    commit = f"`{(doc.get('commit') or 'unknown')[:10]}`" + (
        " with local changes" if doc.get("dirty") else "")
    v, m = doc.get("versions", {}), doc.get("machine", {})
    load = doc.get("load")
    load_s = (f"; load average {load['before']:.1f} before, {load['after']:.1f} after"
              if load else "")
    return (f"Measured {when} at commit {commit}: Python {doc.get('python')}, torch "
            f"{v.get('torch')}, Ray {v.get('ray')}, grpcio {v.get('grpcio')}; "
            f"{m.get('processor')}, {m.get('cpus')} CPUs, {m.get('memory_gib')} GiB{load_s}.")


def section(name: str, doc: dict | None, results: Path = RESULTS) -> str:
    if doc is None:
        why = ("Not run: no CUDA device on the machines that ran the benches"
               if name == "gpu" else "Not run yet")
        return f"### {name}\n\n{why} (no `bench/results/{name}.json`).\n"
    if doc.get("quick"):  # BENCH_SERVE_QUICK: windows and rounds cut short
        return (f"### {name}\n\nOnly a smoke run ({provenance_line(doc)}) is recorded: its "
                "figures are not comparable, so none is shown. Run the bench in full.\n")
    met = [r for r in doc["rows"] if r.get("met") is not None]
    return (f"### {name}\n\n{provenance_line(doc)} Targets met: "
            f"{sum(bool(r['met']) for r in met)} of {len(met)}.\n\n{table(doc['rows'])}\n"
            + images(name, results))


def images(name: str, results: Path = RESULTS) -> str:
    """The bench's plots, `<name>*.png` beside its results, as images (paths relative to
    bench/README.md)."""
    return "".join(f"\n![{p.stem}](results/{p.name})\n"
                   for p in sorted(results.glob(f"{name}*.png")))


def results_markdown(results: Path = RESULTS) -> str:
    docs = {}
    for name in ORDER:
        path = results / f"{name}.json"
        docs[name] = json.loads(path.read_text()) if path.exists() else None
    return "\n".join(section(n, d, results) for n, d in docs.items())


def write_readme(readme: Path = README, results: Path = RESULTS) -> Path:
    text = readme.read_text()
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{START}\n{results_markdown(results)}\n{END}{tail}")
    return readme


def readme_block(readme: Path = README) -> str:
    """What lies between the markers now (for the test that it is the generated text)."""
    return readme.read_text().split(START, 1)[1].split(END, 1)[0].strip()
