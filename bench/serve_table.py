"""The serving bench's table: one Serve mode's raw figures (bench/serve.py) as rows, each a
like-for-like ratio (same mode, protocol and batching on both sides) with its spread over the
interleaved rounds and the errors of both sides."""
from __future__ import annotations

from bench.common import row

PROTOS = {"rest": "REST", "grpc": "gRPC"}
BATCHING = {"": "batching off", "_batch": "batching 32/2ms (both sides)"}
RPS_TARGET = {"": ">= 1.0", "_batch": ">= 1.5"}
OPEN_P99_OVER_P50 = "<= 3"


def _spread(stat: dict, digits: int = 3) -> str:
    return f"{stat['min']:.{digits}g}-{stat['max']:.{digits}g}"


def _errors(ours: dict, base: dict) -> str:
    return f"{ours['errors']} / {base['errors']}"


def sequential_rows(r: dict, label) -> list[dict]:
    out = []
    for size, what in (("", "batch 1"), ("32", "32 instances")):
        for proto, name in PROTOS.items():
            ours, base = r[f"seq{size}_{proto}_ours"], r[f"seq{size}_{proto}_base"]
            spread = "p50 per round: " + ", ".join(f"{v:.3g}" for v in ours["round_p50_ms"])
            out.append(row(label(f"{name} sequential {what}, p50 ms"), ours["p50_ms"],
                           base["p50_ms"], "<= 1.2" if not size else None, spread=spread))
            out.append(row(label(f"{name} sequential {what}, p99 ms"), ours["p99_ms"],
                           base["p99_ms"]))
    return out


def closed_loop_rows(r: dict, label) -> list[dict]:
    out = []
    for proto, name in PROTOS.items():
        for batch, how in BATCHING.items():
            ours, base = r[f"conc_{proto}_ours{batch}"], r[f"conc_{proto}_base{batch}"]
            what = f"{name} 32 clients, {how}"
            stable = (f"stable rounds {ours['stable_rounds']}/{ours['rounds']} vs "
                      f"{base['stable_rounds']}/{base['rounds']}")
            errors = _errors(ours, base)
            out.append(row(label(f"{what}, req/s"), ours["rps"]["median"],
                           base["rps"]["median"], RPS_TARGET[batch],
                           spread=_spread(ours["rps"]), errors=errors, note=stable))
            out.append(row(label(f"{what}, p50 ms"), ours["p50_ms"]["median"],
                           base["p50_ms"]["median"], spread=_spread(ours["p50_ms"])))
            out.append(row(label(f"{what}, p99 ms"), ours["p99_ms"]["median"],
                           base["p99_ms"]["median"], "<= 1.2",
                           spread=_spread(ours["p99_ms"]), errors=errors))
    return out


def open_loop_rows(r: dict, label) -> list[dict]:
    out = []
    for proto, name in PROTOS.items():
        for share in (50, 90):
            ours, base = r[f"open_{proto}_ours_{share}"], r[f"open_{proto}_base_{share}"]
            what = f"{name} open loop at {share} % of our capacity ({ours['rate']:.0f} req/s)"
            errors = _errors(ours, base)
            out.append(row(label(f"{what}, p99 ms"), ours["p99_ms"], base["p99_ms"],
                           errors=errors,
                           note=f"p50 {ours['p50_ms']:.3g} vs {base['p50_ms']:.3g}, "
                                f"p95 {ours['p95_ms']:.3g} vs {base['p95_ms']:.3g}"))
            # The baseline's own p99 / p50 at the same rate, beside ours: how much of the tail
            # is the shared machine's rather than either server's.
            out.append(row(label(f"{what}, p99 / p50"), ours["p99_ms"] / ours["p50_ms"],
                           base["p99_ms"] / base["p50_ms"], target=OPEN_P99_OVER_P50,
                           on="ours"))
            out.append(row(label(f"{what}, our failed requests"), ours["errors"],
                           target="<= 0", on="ours", errors=errors))
    return out


def ours_only_rows(r: dict, label) -> list[dict]:
    out = []
    sizes = {int(k): n for k, n in r["batch_sizes"].items()}
    if passes := sum(sizes.values()):
        out.append(row(label("gRPC batching on: mean requests per forward"),
                       sum(k * n for k, n in sizes.items()) / passes))
    on, off = r["resnet_grpc_batch"], r["resnet_grpc"]
    out.append(row(label("ResNet gRPC 32 clients req/s, ours: batching on vs off"), on["rps"],
                   off["rps"], errors=f"{on['errors']} / {off['errors']}"))
    ro, steady = r["rollout_grpc"], r["steady_grpc_batch"]
    out.append(row(label(f"gRPC 32 clients during a rollout, p99 ms (vs steady; "
                         f"{ro['requests']} requests)"), ro["p99_ms"], steady["p99_ms"],
                   errors=f"{ro['errors']} / {steady['errors']}"))
    out.append(row(label("gRPC 32 clients during a rollout, failed requests"), ro["errors"],
                   target="<= 0", on="ours"))
    return out


def table_rows(mode: str, r: dict) -> list[dict]:
    def label(fig: str) -> str:
        return f"[{mode}] {fig}"
    return ([row(label("forward batch 1, p50 ms (floor)"), r["forward"]["p50_ms"])]
            + sequential_rows(r, label) + closed_loop_rows(r, label)
            + open_loop_rows(r, label) + ours_only_rows(r, label))
