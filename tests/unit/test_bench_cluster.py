"""bench/cluster.py's arithmetic: /proc stat lines, CPU % from two samples, the stack's
process tree, the rows against ranks; and the results page embeds a bench's plots."""
from __future__ import annotations

import json

from bench import cluster, report


def _stat(pid, comm, ppid, session, utime, stime, rss, state="S"):
    """A /proc/<pid>/stat line (52 fields) with the ones we read set."""
    fields = [state, ppid, pid, session] + [0] * 7 + [utime, stime] + [0] * 8 + [rss]
    fields += [0] * (50 - len(fields))
    return f"{pid} ({comm}) " + " ".join(map(str, fields))


def test_a_stat_line_with_spaces_and_parentheses_in_the_name_parses():
    got = cluster.parse_stat(_stat(42, "ray::IDLE (x) y", 7, 5, 120, 30, 2560))
    assert got == {"state": "S", "ppid": 7, "session": 5, "ticks": 150, "rss_pages": 2560}


def test_cpu_percent_is_ticks_over_time_and_a_new_process_counts_from_zero():
    before = {1: 1000, 2: 50}
    after = {1: 1150, 2: 50, 3: 20}  # 3 started between the samples
    got = cluster.cpu_percent(before, after, seconds=30, hz=100)
    assert got[1] == 5.0 and got[2] == 0.0 and round(got[3], 4) == round(20 / 30, 4)


def test_the_stack_is_its_sessions_and_their_descendants_only():
    procs = {10: {"session": 10, "ppid": 1}, 11: {"session": 10, "ppid": 10},
             12: {"session": 12, "ppid": 11},   # a child that started a session of its own
             13: {"session": 12, "ppid": 12},
             20: {"session": 20, "ppid": 1},    # another component
             99: {"session": 99, "ppid": 1}}    # not ours
    owner = cluster.stack_pids(procs, {"ray": 10, "api": 20})
    assert owner == {10: "ray", 11: "ray", 12: "ray", 13: "ray", 20: "api"}
    assert cluster.by_component({10: 1.0, 13: 2.0, 20: 0.5}, owner) == {"ray": 3.0, "api": 0.5}


def test_top_is_the_largest_first():
    got = cluster.top({1: 1.0, 2: 5.0, 3: 3.0}, {2: "b"}, n=2)
    assert [(t["pid"], t["process"], t["value"]) for t in got] == [(2, "b", 5.0), (3, "?", 3.0)]


def test_each_two_rank_figure_is_against_one_rank_on_one_node():
    figures = {"1 rank, one node": [100.0, 110.0, 90.0], "2 ranks, one node": [150.0, 160.0],
               "2 ranks, two nodes": [120.0, 140.0, 130.0]}
    rows = {r["figure"].split(", ", 1)[1]: r for r in cluster.ranks_rows(figures)}
    assert set(rows) == {"1 rank, one node", "2 ranks, one node", "2 ranks, two nodes"}
    assert rows["1 rank, one node"]["ours"] == 100.0 and rows["1 rank, one node"]["ratio"] is None
    assert rows["2 ranks, one node"]["ratio"] == 1.55
    assert rows["2 ranks, two nodes"]["ratio"] == 1.3
    assert "2 cores" in rows["2 ranks, two nodes"]["note"]
    assert rows["2 ranks, two nodes"]["spread"] == "120-140 over 3"


def test_the_idle_rows_are_absolute_and_list_every_component():
    idle = {"processes": 30, "seconds": 30.0, "cpu_percent": 12.5, "rss_mib": 900.0,
            "rss_mib_samples": [890.0, 900.0, 910.0],
            "cpu_by_component": {"ray": 10.0, "redis": 0.5},
            "rss_by_component": {"ray": 800.0, "redis": 8.0, "api": 92.0}}
    rows = cluster.idle_rows(idle)
    assert all(r["baseline"] is None and "target" not in r for r in rows)
    assert [r["ours"] for r in rows[:2]] == [12.5, 900.0]
    names = [r["figure"] for r in rows[2:]]
    assert names[:2] == ["idle stack: ray, CPU (% of one core)",
                         "idle stack: ray, resident memory (MiB)"]
    assert "idle stack: api, CPU (% of one core)" in names  # 0 %, still listed


def test_the_plot_is_written_and_the_results_page_embeds_it(tmp_path):
    figures = {"1 rank, one node": [100.0, 110.0], "2 ranks, one node": [150.0, 170.0]}
    path = cluster.plot(figures, tmp_path / "cluster_ranks.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    doc = {"time": 0, "rows": cluster.ranks_rows(figures)}
    (tmp_path / "cluster.json").write_text(json.dumps(doc))
    md = report.results_markdown(tmp_path)
    assert "![cluster_ranks](results/cluster_ranks.png)" in md
    assert md.count("](results/") == 1  # only the cluster section has a plot
