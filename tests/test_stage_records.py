"""Stage records: skip unchanged stages, resume started ones, recompute stale ones."""

import json

import pytest
import torch

from speechbrain_skill.training.stage_records import (
    StageRecords,
    StaleStageError,
    module_fingerprint,
)


def test_unchanged_stage_is_skipped_with_its_summary(tmp_path):
    records = StageRecords(tmp_path / "stages")
    stage = records.stage("prune", settings={"target_sparsity": 0.75}, inputs={})
    assert not stage.done
    stage.finish({"expected_sparsity": 0.7})
    again = records.stage("prune", settings={"target_sparsity": 0.75}, inputs={})
    assert again.done and again.summary == {"expected_sparsity": 0.7}
    assert again.fingerprint == stage.fingerprint


def test_started_stage_with_the_same_fingerprint_resumes_and_keeps_outputs(tmp_path):
    records = StageRecords(tmp_path / "stages")
    checkpoints = tmp_path / "prune" / "checkpoints"
    checkpoints.mkdir(parents=True)
    records.stage("prune", {"steps": 8}, {}, outputs=[checkpoints])
    resumed = records.stage("prune", {"steps": 8}, {}, outputs=[checkpoints])
    assert not resumed.done and checkpoints.is_dir()


@pytest.mark.parametrize("finished", [True, False])
def test_changed_setting_removes_the_outputs_and_reruns(tmp_path, finished):
    records = StageRecords(tmp_path / "stages")
    outputs = [tmp_path / "prune", tmp_path / "history.jsonl"]
    stage = records.stage("prune", {"target_sparsity": 0.75}, {}, outputs=outputs)
    (outputs[0] / "checkpoints" / "CKPT+1").mkdir(parents=True)
    outputs[1].write_text("{}\n")
    if finished:
        stage.finish({"expected_sparsity": 0.7})
    stale = records.stage("prune", {"target_sparsity": 0.3}, {}, outputs=outputs)
    assert not stale.done and stale.fingerprint != stage.fingerprint
    assert list(outputs[0].iterdir()) == [] and not outputs[1].exists()
    record = json.loads((tmp_path / "stages" / "prune.json").read_text())
    assert (
        record["status"] == "started" and record["settings"]["target_sparsity"] == 0.3
    )


def test_changed_input_makes_the_stage_stale(tmp_path):
    records = StageRecords(tmp_path / "stages")
    records.stage("final", {}, {"prune": "aaaa"}).finish({"loss": 1.0})
    assert not records.stage("final", {}, {"prune": "bbbb"}).done


def test_stop_names_what_changed_and_leaves_the_outputs(tmp_path):
    records = StageRecords(tmp_path / "stages", on_stale="stop")
    folder = tmp_path / "prune"
    folder.mkdir()
    records.stage("prune", {"num_groups": 3, "k": 1}, {"teacher": "t1"}).finish({})
    with pytest.raises(StaleStageError) as error:
        records.stage("prune", {"num_groups": 4, "k": 1}, {"teacher": "t1"}, [folder])
    assert "num_groups: 3 -> 4" in str(error.value) and "k:" not in str(error.value)
    assert "--on_stale=recompute" in str(error.value) and folder.is_dir()


def test_on_stale_value_is_checked(tmp_path):
    with pytest.raises(ValueError, match="on_stale"):
        StageRecords(tmp_path, on_stale="ignore")


def test_module_fingerprint_follows_the_weights_not_the_object():
    torch.manual_seed(0)
    first = torch.nn.Linear(4, 3)
    copy = torch.nn.Linear(4, 3)
    copy.load_state_dict(first.state_dict())
    assert module_fingerprint(first) == module_fingerprint(copy)
    with torch.no_grad():
        copy.weight[2, 1] = -copy.weight[2, 1]
    assert module_fingerprint(first) != module_fingerprint(copy)
    assert module_fingerprint(first.to(torch.bfloat16)) != module_fingerprint(copy)
