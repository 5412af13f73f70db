"""Slot filling: SNIPS transcripts, split by voice, tokens, layout errors, recipe."""

import csv
import json
import sys
from pathlib import Path

import pytest
from recipe_runner import recipe_args, run_recipe

from speechbrain_skill.data.analogs.slots import build_sf_analog
from speechbrain_skill.downstream.superb_metrics import parse_slots
from speechbrain_skill.downstream.token_ctc import (
    slot_text_to_tokens,
    tokens_to_slot_text,
)

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "SNIPS" / "SF"
sys.path.insert(0, str(RECIPE))

from snips_prepare import prepare_snips, tag_transcript  # noqa: E402

YAML = "recipes/SNIPS/SF/hparams/sf_ctc_bilstm.yaml"


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_transcript_tags_wrap_each_slot_value():
    line = (
        "Amy-7 BOS Book a table in New York tonight EOS"
        "\tO O O O O city city timeRange X"
    )
    uid, text = tag_transcript(line)
    assert uid == "Amy-7"
    assert (
        text == "book a table in B-city new york E-city B-timeRange tonight E-timeRange"
    )
    assert parse_slots(text) == {"city": ["new york"], "timeRange": ["tonight"]}
    # B-/I- prefixed word labels mean the same.
    prefixed = line.replace("city city", "B-city I-city")
    assert tag_transcript(prefixed)[1] == text
    # Tokens: characters, spaces, whole tags; and back.
    tokens = slot_text_to_tokens(text)
    assert "B-city" in tokens and "n" in tokens and tokens.count(" ") == 10
    assert tokens_to_slot_text(tokens) == text


def test_split_by_voice_keeps_only_listed_speakers(tmp_path):
    data = build_sf_analog(tmp_path / "sf", utterances_per_speaker=2)
    speakers = {
        "train": ["Ivy", "Joey"],
        "valid": ["Aditi"],
        "test": ["Emma", "Nobody"],
    }
    counts = prepare_snips(data, tmp_path / "save", speakers)
    assert counts == {"train": 4, "valid": 2, "test": 2}
    for split, names in speakers.items():
        found = {r["spk_id"] for r in _rows(tmp_path / "save" / f"{split}.csv")}
        assert found <= set(names)
    # The same settings and files: nothing to redo.
    assert prepare_snips(data, tmp_path / "save", speakers) == {}


def test_wrong_layout_stops_before_any_model_loads(tmp_path):
    (tmp_path / "train").mkdir()
    folders = {"analog_sf": tmp_path}
    args = recipe_args(YAML, tmp_path / "out", folders, upstream_source="/no/model")
    log = run_recipe(YAML, args, expect_failure=True)
    last = log.strip().splitlines()[-1]
    assert "all.iob.snips.txt" in last and "valid/" in last and "test/" in last


@pytest.mark.slow
def test_sf_recipe_on_its_analog(recipe_run):
    out, _ = recipe_run(YAML)
    results = json.loads((out / "test_results.json").read_text())
    test = results["results"]["test"]
    assert results["metric"] == "slot_type_f1" and results["higher_is_better"]
    assert 0 <= test["slot_type_f1"] <= 100 and test["slot_value_cer"] >= 0
    assert test["utterances"] == len(_rows(out / "save" / "test.csv"))
    tokens = (out / "save" / "tokens.txt").read_text()
    assert "B-city" in tokens and "E-artist" in tokens
