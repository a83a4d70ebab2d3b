"""The table of examples/README.md, measured: every row's examples submitted as jobs to a real
stack through the SDK, at the row's seeds, and the row rendered from what came back.

    .venv/bin/python -m examples.measure [NAME ...] [--seeds 0 1 2] [--write] [--api ADDRESS]
    .venv/bin/python -m examples.measure --sections [SECTION ...]   # the other sections' scripts
    .venv/bin/python -m examples.measure --all           # every row, then every section

Without `--api` a throwaway local stack (redis, Ray, the API, the dispatcher) is started on
free ports and torn down afterwards; with it the jobs go to that API (token as the SDK takes
it) and the rows that read trained weights (autoencoders, VAE, GAN) need its model storage
on this machine. NAME is a row's key (`python -m examples.measure --list`); none: every row.

Each row declares its seeds: three (0, 1, 2) where the result varies with the seed, shown as
mean ± std with the value at each seed; the two searches run once and say so, since which
trial wins varies from run to run. `--seeds` overrides them for the rows named.

Results are kept per row in examples/results.json; `--write` merges the rows just measured
into it and renders the whole table from it between the markers in examples/README.md, so
no row is typed by hand and `--write NAME` changes only that row. tests/test_examples.py
checks the same claims in-process at each spec's own seed.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

from examples.measure_rows import ROWS, Row

HERE = Path(__file__).resolve().parent
README = HERE / "README.md"
RESULTS = HERE / "results.json"
BEGIN = "<!-- examples/measure.py: begin -->"
END = "<!-- examples/measure.py: end -->"
HEADER = ["| topic of the notes | example | result | target |", "|---|---|---|---|"]
UNMEASURED = "(not re-measured by examples/measure.py yet)"
JOB_TIMEOUT_S = 1800


# --- the session: jobs through the SDK ----------------------------------------------------------

class Session:
    """Submits example specs through `client` and waits for them; a job of the same spec and
    seed is run once per session (several rows read the plain autoencoder, the judge...)."""

    def __init__(self, client):
        self.client = client
        self._jobs: dict[tuple, object] = {}

    def job(self, name: str, seed: int, edit: Callable[[dict], None] | None = None,
            variant: str = ""):
        key = (name, seed, variant)
        if key not in self._jobs:
            self._jobs[key] = self._run(self.spec(name, seed, edit))
        return self._jobs[key]

    @staticmethod
    def spec(name: str, seed: int, edit: Callable[[dict], None] | None = None) -> dict:
        import yaml
        doc = yaml.safe_load((HERE / f"{name}.yaml").read_text())
        doc.setdefault("training", {})["seed"] = seed
        doc.setdefault("labels", {})["measured-by"] = "examples-measure"
        if edit:
            edit(doc)
        return doc

    def _run(self, doc: dict):
        from trainserve.core.pb import job_pb2
        job = self.client.submit(doc)
        job = self.client.wait(job.id, timeout=JOB_TIMEOUT_S)
        if job.state != job_pb2.JOB_STATE_SUCCEEDED:
            raise RuntimeError(f"job {job.id} ({doc.get('name')}): {job.message}")
        return job

    def metrics(self, name: str, seed: int, *keys: str) -> dict:
        m = self.job(name, seed).metrics
        return {k: m[k] for k in keys}

    def artifact(self, job) -> Path:
        """The trained weights' folder of a job (its registered version's storage)."""
        return Path(self.client.get_model(job.model_name, job.model_version).artifact_uri)

    def judge(self):
        """The digits classifier that labels VAE and GAN samples: cnn_digits.yaml at seed 0,
        as tests/test_examples_generative.py's judge."""
        from tests.test_examples_generative import _predictor
        return _predictor(self.artifact(self.job("cnn_digits", 0)))


@contextmanager
def local_client(num_cpus: int = 2):
    """A throwaway local stack on free ports and an admin client of it."""
    from trainserve.client import Client
    from trainserve.local import Config, LocalStack, free_port, port_settings
    root = Path(tempfile.mkdtemp(prefix="ts-examples-"))
    ports = {f: free_port() for f in port_settings()}
    stack = LocalStack(Config(state_dir=root / "state", ray_num_cpus=num_cpus,
                              ray_temp_dir=str(root / "ray"), **ports))
    try:
        stack.up()
        token = stack.config.admin_token_path.read_text().strip()
        with Client(stack.config.api_address, token=token, timeout=120) as client:
            yield client
    finally:
        stack.down()
        shutil.rmtree(root, ignore_errors=True)


BY_KEY = {row.key: row for row in ROWS}


# --- results and rendering ----------------------------------------------------------------------

def load_results(path: Path | None = None) -> dict:
    path = path or RESULTS
    return json.loads(path.read_text()) if path.exists() else {}


def save_results(results: dict, path: Path | None = None) -> None:
    text = json.dumps(results, indent=1, sort_keys=True, ensure_ascii=False)
    (path or RESULTS).write_text(text + "\n")


def render_row(row: Row, entry: dict | None) -> str:
    """The row's Markdown line from its stored entry: {"seeds", "runs"}, or {"unmeasured":
    text} for a row kept from before this script (marked so), or none."""
    if row.measure is None:
        return f"| {row.topic} | {row.examples} | {row.shown([], [])} | {row.target} |"
    if not entry or "runs" not in entry:
        text = (entry or {}).get("unmeasured", "not measured yet")
        return f"| {row.topic} | {row.examples} | {text} {UNMEASURED} | {row.target} |"
    result = row.shown(entry["seeds"], entry["runs"])
    target = row.target
    if row.met is not None:
        target += ": met" if row.met(entry["runs"]) else ": **missed**" + _where(row, entry)
    return f"| {row.topic} | {row.examples} | {result} | {target} |"


def _where(row: Row, entry: dict) -> str:
    """At which seeds a target that holds seed by seed was missed ("" for one seed, or a
    target on all the seeds together)."""
    at = getattr(row.met, "at", None)
    if at is None or len(entry["seeds"]) == 1:
        return ""
    missed = [str(s) for s, run in zip(entry["seeds"], entry["runs"]) if not at(run)]
    return f" at seed{'s' * (len(missed) > 1)} {', '.join(missed)}"


def table(results: dict) -> str:
    return "\n".join([*HEADER, *(render_row(row, results.get(row.key)) for row in ROWS)])


def replace_table(text: str, new_table: str) -> str:
    """`text` with the table between the markers replaced; the first time, the first table
    with this header is moved between new markers."""
    block = f"{BEGIN}\n{new_table}\n{END}"
    if BEGIN in text:
        start, rest = text.split(BEGIN, 1)
        return start + block + "\n\n" + rest.split(END, 1)[1].lstrip("\n")
    lines = text.split("\n")
    first = lines.index(HEADER[0])
    last = first
    while last + 1 < len(lines) and lines[last + 1].startswith("|"):
        last += 1
    return "\n".join(lines[:first] + [block] + lines[last + 1:])


def write_readme(results: dict, path: Path | None = None) -> None:
    path = path or README
    path.write_text(replace_table(path.read_text(), table(results)))


# --- the other sections --------------------------------------------------------------------------

# name: (the command, what it makes): the scripts behind the README's and docs' other numbers.
SECTIONS = {
    "options": (["-m", "examples.options_measure", "--write"],
                "examples/README.md: Training options, one at a time"),
    "phantoms": (["-m", "examples.phantom_measure", "--write"],
                 "examples/README.md and docs/evaluation.md: Lesion phantoms"),
    "vanishing_gradients": (["examples/vanishing_gradients_measure.py"],
                            "docs/interpretability.md's table (printed)"),
    "clinical": (["examples/clinical/measure.py"], "docs/training-options.md's clinical "
                 "metrics (printed)"),
    "attention": (["examples/attention_measure.py"], "docs/interpretability.md's attention "
                  "map (printed)"),
}


def run_sections(names: list[str]) -> None:
    root = HERE.parent
    for name in names or SECTIONS:
        argv, makes = SECTIONS[name]
        print(f"== {name}: {makes}: python {' '.join(argv)}", flush=True)
        subprocess.run([sys.executable, *argv], cwd=root, check=True)


# --- command line --------------------------------------------------------------------------

def measure_rows(client, rows: list[Row], seeds: list[int] | None, write: bool) -> dict:
    session = Session(client)
    measured = {}
    for row in rows:
        row_seeds = list(seeds or row.seeds)
        try:
            runs = [row.measure(session, seed) for seed in row_seeds]
        except Exception as exc:  # noqa: BLE001 - one row's failure must not lose the others
            print(f"{row.key}: FAILED: {exc!r}", file=sys.stderr, flush=True)
            continue
        measured[row.key] = {"seeds": row_seeds, "runs": runs,
                             "measured": dt.date.today().isoformat()}
        print(render_row(row, measured[row.key]), flush=True)
        if write:  # row by row: an interrupted run keeps what it measured
            results = load_results() | {row.key: measured[row.key]}
            save_results(results)
            write_readme(results)
    return measured


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", metavar="NAME", help="row keys (default: every row)")
    ap.add_argument("--seeds", type=int, nargs="+", help="instead of each row's own seeds")
    ap.add_argument("--write", action="store_true",
                    help="merge into examples/results.json and render examples/README.md")
    ap.add_argument("--api", help="a running stack's API address (default: start one)")
    ap.add_argument("--list", action="store_true", help="the rows' keys and seeds")
    ap.add_argument("--render", action="store_true",
                    help="only render the table from examples/results.json")
    ap.add_argument("--sections", nargs="*", metavar="SECTION",
                    help=f"run the other sections' scripts instead ({', '.join(SECTIONS)})")
    ap.add_argument("--all", action="store_true",
                    help="every row with --write, then every section: all the numbers")
    args = ap.parse_args(argv)
    args.write = args.write or args.all
    if args.sections is not None:
        return run_sections(args.sections)
    if args.list:
        for row in ROWS:
            print(f"{row.key:28} seeds {' '.join(map(str, row.seeds)) or '-'}  {row.examples}")
        return
    if unknown := set(args.names) - set(BY_KEY):
        ap.error(f"unknown rows {sorted(unknown)}; known: {', '.join(BY_KEY)}")
    if args.render:
        print(table(load_results()))
        return write_readme(load_results()) if args.write else None
    rows = [r for r in ([BY_KEY[n] for n in args.names] or ROWS) if r.measure is not None]
    if args.api:
        from trainserve.client import Client
        with Client(args.api, timeout=120) as client:
            measure_rows(client, rows, args.seeds, args.write)
    else:
        with local_client() as client:
            measure_rows(client, rows, args.seeds, args.write)
    if args.all:
        run_sections([])


if __name__ == "__main__":
    main()
