"""The comparison command: one row per upstream with measured values."""

import csv
import json

import pytest

from speechbrain_skill.downstream.compare import main


@pytest.mark.slow
def test_compare_kws_on_three_upstreams(builtin_corpus, tiny_wavlm, tmp_path):
    from speechbrain_skill.lobes.student import PrunableSSLEncoder, save_student

    student = save_student(
        PrunableSSLEncoder.from_hf(tiny_wavlm, num_layers=2), tmp_path / "student"
    )
    out = tmp_path / "compare"
    code = main(
        [
            "--upstream", f"teacher={tiny_wavlm}",
            "--upstream", f"student={student}",
            "--upstream", f"floor=random:{student}",
            "--data_folder", str(builtin_corpus),
            "--output", str(out),
            "--tasks", "kws",
            "--quick",
            "--in_process",
            "--recipe_args=--number_of_epochs=1 --batch_size=4",
            "--speed_seconds", "1.0",
            "--speed_repeats", "2",
        ]
    )  # fmt: skip
    assert code == 0
    report = json.loads((out / "comparison.json").read_text())
    rows = {row["name"]: row for row in report["upstreams"]}
    assert list(rows) == ["teacher", "student", "floor"]
    assert rows["teacher"]["params"] > rows["student"]["params"]
    assert rows["student"]["params"] == rows["floor"]["params"]
    assert rows["floor"]["kind"] == "random-student"
    # Each accuracy is a count of correct test clips out of the clips, and the
    # table shows what each run wrote in its results file.
    with open(next(out.rglob("save/test.csv")), newline="") as handle:
        clips = len(list(csv.DictReader(handle)))
    measured = sorted(
        json.loads(path.read_text())["results"]["test"]["accuracy"]
        for path in out.rglob("test_results.json")
    )
    assert sorted(row["metrics"]["kws"] for row in rows.values()) == measured
    for row in rows.values():
        correct = row["metrics"]["kws"] * clips / 100
        assert abs(correct - round(correct)) < 1e-3
        assert row["x_real_time"] > 0 and row["cpu_ms_per_second"] > 0
        assert len(row["layer_weights"]["kws"]) in (3, 5)
    table = (out / "comparison.md").read_text()
    assert table.count("\n| ") == 4  # header + 3 rows
    for name in ("comparison.png", "layer_weights_kws.png"):
        assert (out / name).stat().st_size > 0
