"""Training throughput against ranks, and what the idle stack costs, on a real local stack.

- The median epoch's training samples/s of one digits LeNet-5 job (batch 64, 20 epochs; the
  first epoch dropped) through the job API: 1 worker and 2 workers (DDP through Ray Train) on
  one Ray node (the stack's own head, 2 CPUs), interleaved; then 1 and 2 workers on a Ray
  cluster of two nodes on this machine (`cluster/local_cluster.py`: a head with no CPUs and
  two 1-CPU worker nodes, so the 2 ranks run on two nodes), interleaved. Each 2-rank figure
  is set against the 1-rank figure on one node: the speedup (scaling efficiency is half of
  it). The samples/s of an epoch is the samples of every rank over the epoch's training time.
- The idle stack: 15 s after `trainserve up` is ready, every process of the stack (each
  component's session and the descendants of its members: redis, Ray's GCS, raylet, agents
  and workers, Serve's replicas, the API, the dispatcher, Prometheus) sampled from /proc over
  30 s: the CPU they used (% of one core) and their resident memory (MiB).
- bench/results/cluster_ranks.png: samples/s against ranks.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench.common import RESULTS, ROOT, local_stack, median, print_table, row, save, spread

MODEL = "LeNet-5"
EPOCHS = 20     # the first is dropped: the median is over 19
REPEATS = 3     # jobs per configuration, interleaved
SETTLE_S = 15.0
SAMPLE_S = 30.0
RSS_EVERY_S = 2.0
TOP = 5
PLOT = RESULTS / "cluster_ranks.png"
CORES_NOTE = ("this machine has 2 cores, shared by every process of the stack (and its "
              "neighbours'), so 2 ranks cannot reach 2x; DDP all-reduces the gradients every "
              "step (20 steps an epoch)")

# The configurations, in the order they are shown: (label, ranks, on the two-node cluster).
CONFIGS = (("1 rank, one node", 1, False), ("2 ranks, one node", 2, False),
           ("1 rank, two-node cluster", 1, True), ("2 ranks, two nodes", 2, True))


# -- /proc: the stack's processes, their CPU ticks and memory ---------------------------------

def parse_stat(text: str) -> dict:
    """The fields of a /proc/<pid>/stat line we use: ppid, session, utime + stime (clock
    ticks), rss (pages). The command name (in parentheses) may hold spaces and parentheses."""
    fields = text[text.rindex(")") + 2:].split()
    return {"state": fields[0], "ppid": int(fields[1]), "session": int(fields[3]),
            "ticks": int(fields[11]) + int(fields[12]), "rss_pages": int(fields[21])}


def snapshot() -> dict[int, dict]:
    """pid -> `parse_stat` of every live process."""
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = parse_stat(Path(f"/proc/{entry}/stat").read_text())
            except (OSError, ValueError, IndexError):
                continue  # gone meanwhile
            if stat["state"] not in "ZX":
                out[int(entry)] = stat
    return out


def stack_pids(procs: dict[int, dict], leaders: dict[str, int]) -> dict[int, str]:
    """pid -> component for every process of the stack: the members of each component's
    session (its leader's pid) and every descendant of those (a process may start a
    session of its own)."""
    owner = {pid: name for pid, p in procs.items() for name, sid in leaders.items()
             if p["session"] == sid}
    children: dict[int, list[int]] = {}
    for pid, p in procs.items():
        children.setdefault(p["ppid"], []).append(pid)
    todo = list(owner)
    while todo:
        pid = todo.pop()
        for child in children.get(pid, []):
            if child not in owner:
                owner[child] = owner[pid]
                todo.append(child)
    return owner


def cpu_percent(before: dict[int, int], after: dict[int, int], seconds: float,
                hz: int = 100) -> dict[int, float]:
    """% of one core each process used between two samples of its CPU ticks (utime +
    stime); a process only in `after` started meanwhile and counts from 0."""
    return {pid: 100.0 * (ticks - before.get(pid, 0)) / hz / seconds
            for pid, ticks in after.items()}


def top(values: dict[int, float], names: dict[int, str], n: int = TOP) -> list[dict]:
    return [{"pid": pid, "process": names.get(pid, "?"), "value": round(v, 2)}
            for pid, v in sorted(values.items(), key=lambda kv: -kv[1])[:n]]


def by_component(values: dict[int, float], owner: dict[int, str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for pid, v in values.items():
        out[owner[pid]] = out.get(owner[pid], 0.0) + v
    return out


def _name(pid: int) -> str:
    from trainserve.local import cmdline

    return " ".join(cmdline(pid).split())[:80] or "?"


def sample_idle(leaders: dict[str, int], seconds: float = SAMPLE_S) -> dict:
    """CPU % (of one core) and RSS (MiB) of every process of the stack over `seconds`."""
    page_mib = os.sysconf("SC_PAGE_SIZE") / 2**20
    hz = os.sysconf("SC_CLK_TCK")
    start = snapshot()
    owner = stack_pids(start, leaders)
    ticks0 = {pid: start[pid]["ticks"] for pid in owner}
    t0, totals, rss = time.monotonic(), [], {}
    while time.monotonic() - t0 < seconds:
        time.sleep(RSS_EVERY_S)
        now = snapshot()
        owner |= stack_pids(now, leaders)
        rss = {pid: now[pid]["rss_pages"] * page_mib for pid in owner if pid in now}
        totals.append(sum(rss.values()))
    elapsed = time.monotonic() - t0
    cpu = cpu_percent(ticks0, {pid: now[pid]["ticks"] for pid in owner if pid in now},
                      elapsed, hz)
    live = {pid: owner[pid] for pid in rss}
    names = {pid: f"{live[pid]}: {_name(pid)}" for pid in live}
    return {"seconds": round(elapsed, 1), "processes": len(live),
            "cpu_percent": sum(cpu.values()), "rss_mib": median(totals),
            "rss_mib_samples": [round(t, 1) for t in totals],
            "cpu_by_component": by_component(cpu, live),
            "rss_by_component": by_component(rss, live),
            "top_cpu": top(cpu, names), "top_rss": top(rss, names)}


def idle_rows(idle: dict) -> list[dict]:
    """Absolute figures, no target (the docs set none): the totals, then each component's
    share, the biggest first; the top processes are in the JSON."""
    how = f"{idle['processes']} processes over {idle['seconds']:g} s, {SETTLE_S:g} s after ready"
    rows = [row("idle stack: CPU of all its processes (% of one core)", idle["cpu_percent"],
                note=how),
            row("idle stack: resident memory of all its processes (MiB)", idle["rss_mib"],
                spread=spread(idle["rss_mib_samples"]), note=how)]
    cpu, rss = idle["cpu_by_component"], idle["rss_by_component"]
    for name in sorted(rss, key=lambda n: -rss[n]):
        rows += [row(f"idle stack: {name}, CPU (% of one core)", cpu.get(name, 0.0)),
                 row(f"idle stack: {name}, resident memory (MiB)", rss[name])]
    return rows


# -- training throughput against ranks --------------------------------------------------------

def job_spec(ranks: int):
    from bench import train as bench_train

    spec = bench_train.digits_spec(MODEL, epochs=EPOCHS,
                                   scaling={"num_workers": ranks, "cpus_per_worker": 1})
    spec.name = f"bench-ranks-{ranks}"
    return spec


def epoch_rates(stubs, spec) -> list[float]:
    """Submit `spec`, watch it to the end: the samples/s of each of its epochs."""
    from trainserve.core.pb import job_pb2

    job = stubs.SubmitJob(job_pb2.SubmitJobRequest(spec=spec, request_id=uuid.uuid4().hex))
    rates, last = [], None
    for event in stubs.WatchJob(job_pb2.WatchJobRequest(job_id=job.id), timeout=900):
        if event.HasField("epoch"):
            rates.append(event.epoch.samples_per_second)
        last = event
    if last is None or last.state.state != job_pb2.JOB_STATE_SUCCEEDED:
        raise RuntimeError(f"bench job {job.id} failed: {last and last.state.message}")
    return rates


def samples_per_second(stubs, ranks: int) -> float:
    """The median epoch's samples/s (all ranks) of one job, the first epoch dropped."""
    rates = epoch_rates(stubs, job_spec(ranks))
    if len(rates) != EPOCHS:
        raise RuntimeError(f"{len(rates)} epoch events, expected {EPOCHS}")
    return median(rates[1:])


def interleaved(stubs, configs, repeats: int = REPEATS) -> dict[str, list[float]]:
    """samples/s of `repeats` jobs of each (label, ranks) config, taking turns; one short
    job first, so that no figure includes the first job after `up`."""
    epoch_rates(stubs, job_spec(1))
    out: dict[str, list[float]] = {label: [] for label, _ in configs}
    for _ in range(repeats):
        for label, ranks in configs:
            out[label].append(samples_per_second(stubs, ranks))
            print(f"{label}: {out[label][-1]:,.0f} samples/s", file=sys.stderr)
    return out


def ranks_rows(figures: dict[str, list[float]]) -> list[dict]:
    """A row per configuration; each 2-rank figure against the 1-rank one on one node."""
    base_label = CONFIGS[0][0]
    base = median(figures[base_label])
    rows = []
    for label, ranks, _ in CONFIGS:
        xs = figures.get(label)
        if not xs:
            continue
        against = base if ranks > 1 else None
        note = (f"vs {base_label}; scaling efficiency = ratio / {ranks}; {CORES_NOTE}"
                if against else None)
        rows.append(row(f"{MODEL} digits train samples/s (median epoch), {label}",
                        median(xs), against, note=note, spread=spread(xs)))
    return rows


def _load_local_cluster():
    spec = importlib.util.spec_from_file_location("local_cluster",
                                                  ROOT / "cluster" / "local_cluster.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("local_cluster", module)
    spec.loader.exec_module(module)
    return module


def on_two_nodes(repeats: int = REPEATS) -> dict[str, list[float]]:
    """The cluster configurations: a local stack joined to a two-node Ray cluster on this
    machine (as tests/integration/test_multinode.py sets it up)."""
    from trainserve.core.pb import job_pb2_grpc
    from trainserve.local import Config, LocalStack, free_port, port_settings

    lc = _load_local_cluster()
    root = Path(tempfile.mkdtemp(prefix="ts-bench-mn-"))
    cluster = lc.LocalCluster(root / "cluster", workers=lc.worker_nodes(2, num_cpus=1))
    stack = LocalStack(Config(
        state_dir=root / "state", ray_external_address=cluster.address,
        ray_token_file=str(cluster.token_path),
        **{f: free_port() for f in port_settings() if not f.startswith("ray_")}))
    try:
        cluster.start(timeout=180)
        stack.up(timeout=240)
        stubs = job_pb2_grpc.JobServiceStub(stack.api_channel())
        configs = [(label, ranks) for label, ranks, multi in CONFIGS if multi]
        return interleaved(stubs, configs, repeats)
    finally:
        stack.down()
        cluster.stop(grace=5)
        shutil.rmtree(root, ignore_errors=True)


def plot(figures: dict[str, list[float]], path: Path = PLOT) -> Path:
    """Bars of the median samples/s per configuration, min-max whiskers, speedup on top."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker  # noqa: F401 - matplotlib.ticker below

    labels = [label for label, _, _ in CONFIGS if figures.get(label)]
    meds = [median(figures[label]) for label in labels]
    lo = [m - min(figures[label]) for m, label in zip(meds, labels)]
    hi = [max(figures[label]) - m for m, label in zip(meds, labels)]
    base = meds[0]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    colors = ["#4c72b0" if "one node" in label else "#dd8452" for label in labels]
    bars = ax.bar(range(len(labels)), meds, yerr=[lo, hi], capsize=5, color=colors)
    for bar, m, h in zip(bars, meds, hi):  # above the whisker, so they never overlap
        ax.annotate(f"{m:,.0f}\n{m / base:.2f}x", (bar.get_x() + bar.get_width() / 2, m + h),
                    xytext=(0, 4), textcoords="offset points", ha="center", va="bottom",
                    fontsize=8)
    ax.yaxis.set_major_formatter(matplotlib.ticker.StrMethodFormatter("{x:,.0f}"))
    ax.set_xticks(range(len(labels)), [label.replace(", ", "\n") for label in labels])
    ax.set_ylabel("training samples/s (median epoch)")
    ax.set_xlabel("bars: median of the jobs; whiskers: min-max; x: against 1 rank, one node",
                  fontsize=8)
    ax.set_ylim(0, max(m + h for m, h in zip(meds, hi)) * 1.3)
    ax.set_title(f"{MODEL} on digits, batch 64: samples/s against ranks (2-core machine)",
                 fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def main() -> list[dict]:
    from trainserve.core.pb import job_pb2_grpc

    with local_stack(with_prometheus=bool(shutil.which("prometheus"))) as stack:
        time.sleep(SETTLE_S)
        leaders = {name: pid for name in stack.components
                   if (pid := stack.pid(name)) is not None}
        idle = sample_idle(leaders)
        stubs = job_pb2_grpc.JobServiceStub(stack.api_channel())
        figures = interleaved(stubs, [(label, ranks) for label, ranks, multi in CONFIGS
                                      if not multi])
    figures |= on_two_nodes()
    rows = ranks_rows(figures) + idle_rows(idle)
    print_table("cluster: samples/s against ranks; the idle stack", rows)
    print("plot:", plot(figures))
    meta = {"model": MODEL, "epochs": EPOCHS, "repeats": REPEATS, "figures": figures,
            "idle": idle, "components": sorted(leaders)}
    print("results:", save("cluster", rows, meta))
    return rows


if __name__ == "__main__":
    main()
