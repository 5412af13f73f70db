"""Intent classification: Fluent Speech Commands layout, analog, metric and recipe."""

import csv
import json
import sys
from pathlib import Path

import pytest
import torch
from recipe_runner import recipe_args, run_recipe

from speechbrain_skill.data.analogs.intents import build_ic_analog
from speechbrain_skill.downstream.intent import all_slots_right

RECIPE = (
    Path(__file__).resolve().parent.parent / "recipes" / "FluentSpeechCommands" / "IC"
)
sys.path.insert(0, str(RECIPE))

from fluent_commands_prepare import prepare_fluent_commands  # noqa: E402

YAML = "recipes/FluentSpeechCommands/IC/hparams/ic_mean_pool.yaml"


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def small_analog(tmp_path_factory):
    return build_ic_analog(tmp_path_factory.mktemp("ic"), utterances_per_speaker=2)


def test_accuracy_counts_only_all_three_slots_right():
    # Utterance 1: all right; 2: location wrong; 3: all right.
    action = torch.tensor([[0.9, 0.1], [0.1, 0.9], [0.6, 0.4]])
    obj = torch.tensor([[0.2, 0.8], [0.7, 0.3], [0.9, 0.1]])
    location = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([[0, 1, 0], [1, 0, 1], [0, 0, 1]])
    assert all_slots_right([action, obj, location], labels) == (2, 3)


def test_analog_is_deterministic_and_in_the_fluent_layout(small_analog, tmp_path):
    again = build_ic_analog(tmp_path / "again", utterances_per_speaker=2)
    for split in ("train", "valid", "test"):
        name = f"data/{split}_data.csv"
        assert (small_analog / name).read_text() == (again / name).read_text()
    rows = _rows(small_analog / "data" / "test_data.csv")
    first = rows[0]["path"]
    assert (small_analog / first).read_bytes() == (again / first).read_bytes()
    speakers = {
        s: {r["speakerId"] for r in _rows(small_analog / f"data/{s}_data.csv")}
        for s in ("train", "valid", "test")
    }
    # Split by speaker, as Fluent Speech Commands is.
    assert not speakers["train"] & speakers["test"]
    assert not speakers["train"] & speakers["valid"]


def test_preparation_counts_unusable_audio(small_analog, tmp_path):
    data = tmp_path / "fsc"
    (data / "data").mkdir(parents=True)
    for split in ("train", "valid", "test"):
        text = (small_analog / "data" / f"{split}_data.csv").read_text()
        (data / "data" / f"{split}_data.csv").write_text(text)
    (data / "wavs").symlink_to(small_analog / "wavs")
    lines = (data / "data" / "train_data.csv").read_text().splitlines()
    lines.append("99,wavs/speakers/nobody/gone.wav,nobody,play,activate,music,none")
    (data / "data" / "train_data.csv").write_text("\n".join(lines) + "\n")
    counts = prepare_fluent_commands(data, tmp_path / "save")
    assert counts["train"] == len(lines) - 2  # header and the missing file
    excluded = _rows(tmp_path / "save" / "excluded.csv")
    assert [(r["split"], r["reason"]) for r in excluded] == [("train", "missing")]


def test_wrong_layout_stops_before_any_model_loads(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train_data.csv").write_text("path,action\n")
    # An upstream that cannot load: the layout error must come first.
    folders = {"analog_ic": tmp_path}
    args = recipe_args(YAML, tmp_path / "out", folders, upstream_source="/no/model")
    log = run_recipe(YAML, args, expect_failure=True)
    assert "data/valid_data.csv" in log and "data/test_data.csv" in log
    assert "/no/model" not in log.split("Traceback")[-1].splitlines()[-1]


@pytest.mark.slow
def test_ic_recipe_on_its_analog(recipe_run):
    out, _ = recipe_run(YAML)
    results = json.loads((out / "test_results.json").read_text())
    test = results["results"]["test"]
    clips = len(_rows(out / "save" / "test.csv"))
    assert results["metric"] == "accuracy" and test["utterances"] == clips > 0
    correct = test["accuracy"] * clips / 100
    assert abs(correct - round(correct)) < 1e-3
    actions = (out / "save" / "action_encoder.txt").read_text()
    assert "'change language'" in actions or "change language" in actions
