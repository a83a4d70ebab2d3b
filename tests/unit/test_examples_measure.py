"""examples/measure.py renders examples/README.md's table from stored results: a row's text
from its runs (mean ± std and the seeds), met or missed from its target, rows kept from before
marked so, and `--write` touches only the text between its markers."""
from __future__ import annotations

import json

import pytest

from examples import measure
from examples.measure_rows import ROWS, stat

BY_KEY = {row.key: row for row in ROWS}


def test_every_row_has_a_unique_key_and_every_example_exists():
    assert len(BY_KEY) == len(ROWS)
    for row in ROWS:
        for name in row.examples.split("`")[1::2]:
            if name.endswith(".yaml"):
                assert (measure.HERE / name).exists(), (row.key, name)


def test_several_seeds_render_as_mean_and_std_with_each_seed():
    assert stat([0, 1, 2], [0.97, 0.98, 0.99]) == ("0.980 ± 0.010 (seeds 0, 1, 2: 0.970, 0.980, "
                                                   "0.990)")
    assert stat([0], [0.5]) == "0.500 (seed 0)"


def test_a_row_renders_from_its_results_and_meets_its_target():
    entry = {"seeds": [0, 1, 2], "runs": [{"test_accuracy": a} for a in (0.97, 0.98, 0.99)]}
    line = measure.render_row(BY_KEY["mlp_moons"], entry)
    assert line == ("| MLP on a non-linear 2-D problem | `mlp_moons.yaml` | test accuracy "
                    "0.980 ± 0.010 (seeds 0, 1, 2: 0.970, 0.980, 0.990) | ≥ 0.97: met |")


def test_a_target_missed_at_one_seed_renders_as_missed():
    entry = {"seeds": [0, 1], "runs": [{"test_accuracy": 0.98}, {"test_accuracy": 0.96}]}
    assert measure.render_row(BY_KEY["mlp_moons"], entry).endswith(
        "| ≥ 0.97: **missed** at seed 1 |")
    diabetes = {"seeds": [0, 1, 2, 3], "runs": [{"test_r2": v} for v in (0.45, 0.45, 0.45, 0.37)]}
    assert "**missed**" in measure.render_row(BY_KEY["mlp_diabetes"], diabetes)


def test_a_search_row_says_it_ran_once_and_varies():
    run = {"best_trial": "t3", "config": {"optimizer.lr": "0.01"}, "best": 0.96, "test": 0.97,
           "trials": 2, "epochs_trained": 22, "epochs_full": 40,
           "ends": [["finished", 20, 1], ["stopped_early", 2, 1]]}
    line = measure.render_row(BY_KEY["tune_digits_asha"], {"seeds": [0], "runs": [run]})
    assert "one run (seed 0)" in line and "varies from run to run" in line
    assert "best trial t3 (optimizer.lr = 0.01)" in line
    assert "1 stopped early after 2" in line and "22 epochs trained of the 40" in line


def test_rows_not_measured_keep_their_text_marked_so():
    line = measure.render_row(BY_KEY["gpt_corpus"], {"unmeasured": "cross-entropy 2.2"})
    assert f"cross-entropy 2.2 {measure.UNMEASURED}" in line
    assert measure.UNMEASURED in measure.render_row(BY_KEY["gpt_corpus"], None)


def _readme(tmp_path, body: str):
    path = tmp_path / "README.md"
    path.write_text(body)
    return path


def test_write_moves_the_table_between_markers_then_only_touches_them(tmp_path):
    old = "\n".join([*measure.HEADER, "| typed | `x.yaml` | 1 | — |"])
    path = _readme(tmp_path, f"# Examples\n\nintro\n\n{old}\n\n## After\n\nkept\n")
    measure.write_readme({}, path)
    first = path.read_text()
    assert first.startswith("# Examples\n\nintro\n\n" + measure.BEGIN)
    assert first.endswith(measure.END + "\n\n## After\n\nkept\n")
    assert "| typed |" not in first
    edited = first.replace("intro", "intro, edited").replace("kept", "kept, edited")
    path.write_text(edited)
    results = {"xor_mlp": {"seeds": [0], "runs": [{"test_accuracy": 1.0}]}}
    measure.write_readme(results, path)
    second = path.read_text()
    assert "intro, edited" in second and "kept, edited" in second
    assert "test accuracy 1.000 (seed 0) | 100%: met |" in second
    assert second.split(measure.BEGIN)[0] == edited.split(measure.BEGIN)[0]
    assert second.split(measure.END)[1] == edited.split(measure.END)[1]


def test_the_committed_table_is_the_one_the_results_render():
    """examples/README.md's table is exactly what examples/results.json renders: no row typed."""
    text = measure.README.read_text()
    results = json.loads(measure.RESULTS.read_text())
    if measure.BEGIN not in text:
        pytest.skip("the table is not between the markers yet")
    assert measure.table(results) in text


def test_sections_name_scripts_that_exist():
    for argv, _ in measure.SECTIONS.values():
        target = argv[1].replace(".", "/") + ".py" if argv[0] == "-m" else argv[0]
        assert (measure.HERE.parent / target).exists(), target


def test_measuring_one_row_with_write_changes_only_that_row(tmp_path, monkeypatch):
    """`--write NAME`: the row measured is merged into the results, the others are kept, and
    the table is rendered again from them all."""
    import dataclasses
    results = {"mlp_moons": {"seeds": [0], "runs": [{"test_accuracy": 0.99}]},
               "xor_mlp": {"unmeasured": "typed before"}}
    monkeypatch.setattr(measure, "RESULTS", tmp_path / "results.json")
    monkeypatch.setattr(measure, "README", _readme(tmp_path, "intro\n\n" + measure.table(
        results) + "\n\nafter\n"))
    measure.save_results(results)
    row = dataclasses.replace(BY_KEY["xor_mlp"], measure=lambda session, seed: {
        "test_accuracy": 0.5})
    before = measure.README.read_text().splitlines()
    measure.measure_rows(None, [row], [3], write=True)
    stored = measure.load_results()
    assert stored["xor_mlp"]["seeds"] == [3] and stored["mlp_moons"] == results["mlp_moons"]
    after = measure.README.read_text().splitlines()
    assert len(before) + 2 == len(after)  # the markers, added around the table once
    assert [a for a in after if "`xor_mlp.yaml`" in a] == [
        "| MLP: the first non-linear problem | `xor_mlp.yaml` | test accuracy 0.500 (seed 3) "
        "| 100%: **missed** |"]
    assert [a for a in after if "`mlp_moons.yaml`" in a] == [
        b for b in before if "`mlp_moons.yaml`" in b]
