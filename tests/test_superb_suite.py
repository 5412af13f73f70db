"""The SUPERB suite command: table, score labels, published rows, reuse of runs."""

import csv
import json

import pytest

from speechbrain_skill.downstream.superb import build_rows, main, resolve_tasks
from speechbrain_skill.downstream.superb_score import PUBLISHED, superb_score


def _comparison(details):
    return {
        "upstreams": [
            {"name": "mine", "source": "builtin:x", "params": 1000, "details": details}
        ]
    }


def test_rows_score_what_ran_and_label_the_rest():
    details = {
        "pr": {"PER": 42.77, "utterances": 9},
        "ic": {"accuracy": 54.205},
        "sf": {"slot_type_f1": 79.725, "slot_value_cer": 37.35},
        "qbe": None,  # asked, but the run wrote no result
    }
    rows = build_rows(_comparison(details), ["pr", "qbe", "ic", "sf"], builtin=False)
    ours = rows[0]
    # Hand-worked: each value sits halfway between FBANK and SOTA -> 500.
    assert ours["task_scores"] == pytest.approx(
        {"pr": 500, "ic": 500, "sf": 500}, abs=0.01
    )
    assert ours["score"] == pytest.approx(500, abs=0.01)
    assert ours["cells"]["qbe"] == "failed" and ours["cells"]["ks"] == "not run"
    assert not ours["comparable"] and "partial: 3/10" in ours["note"]
    published = {row["name"]: row for row in rows if row["kind"] == "published"}
    assert set(published) == set(PUBLISHED)
    assert round(published["DPHuBERT"]["score"]) == 866


def test_complete_real_data_row_is_comparable_builtin_never():
    metrics = PUBLISHED["DistilHuBERT"]["metrics"]
    details = {"pr": metrics["pr"], "asr": metrics["asr"], "kws": metrics["ks"]}
    for builtin in (False, True):
        row = build_rows(_comparison(details), ["pr", "asr", "kws"], builtin)[0]
        assert not row["comparable"]  # 3 of 10 tasks
    expected = superb_score(
        {"pr": metrics["pr"], "asr": metrics["asr"], "ks": metrics["ks"]}
    )
    assert row["score"] == pytest.approx(expected["score"])
    assert "built-in analogs" in row["note"]


def test_all_means_every_recipe_in_superb_order():
    assert resolve_tasks(["all"])[:3] == ["pr", "asr", "kws"]
    assert set(resolve_tasks(["all"])) >= {"pr", "asr", "kws", "qbe", "sid", "ic", "sf"}


@pytest.mark.slow
def test_builtin_suite_writes_the_table_and_reuses_runs(tmp_path):
    out = tmp_path / "superb"
    argv = ["--builtin", "--upstream", "teacher=builtin:tiny-wavlm", "--tasks", "qbe"]
    argv += ["--output", str(out), "--in_process"]
    assert main(argv) == 0
    report = json.loads((out / "superb.json").read_text())
    ours = report["rows"][0]
    run = json.loads(next((out / "qbe").rglob("test_results.json")).read_text())
    assert ours["metrics"]["qbe"]["MTWV"] == run["results"]["test"]["MTWV"]
    assert "not comparable" in ours["note"] and list(report["run_seconds"]) == [
        "qbe/teacher"
    ]
    table = (out / "superb.md").read_text()
    assert "NOT comparable" in table and table.count("(published)") >= 4
    with open(out / "superb.csv", newline="") as handle:
        lines = list(csv.DictReader(handle))
    assert [line["kind"] for line in lines] == ["ours"] + ["published"] * 4
    assert (out / "superb.png").stat().st_size > 0
    # A rerun reuses the finished run.
    assert main(argv) == 0
    assert json.loads((out / "superb.json").read_text())["run_seconds"] == {}


def test_every_task_recipe_has_an_analog_and_known_superb_metrics():
    from speechbrain_skill.data.analogs import ANALOG_BUILDERS, analog_builder
    from speechbrain_skill.downstream.compare import TASKS
    from speechbrain_skill.downstream.superb_score import reference_points

    # --builtin calls one builder per task: a new recipe adds one line there.
    assert set(TASKS) <= set(ANALOG_BUILDERS)
    for name, task in TASKS.items():
        assert callable(analog_builder(name))
        # The metric the table reads is one the score knows for that task.
        assert task.metric in {p.metric for p in reference_points(task.superb_task)}
