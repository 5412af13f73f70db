"""Keyword spotting: data preparation (Speech Commands layout, built-in) and recipe."""

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from recipe_runner import recipe_args, run_recipe
from speechbrain.dataio.encoder import CategoricalEncoder

from speechbrain_skill.data.manifests import write_manifest
from speechbrain_skill.lobes.teacher import FrozenSSLTeacher

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "SpeechCommands" / "KWS"
sys.path.insert(0, str(RECIPE))

from speech_commands_prepare import LABELS, prepare_speech_commands  # noqa: E402


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _tone(path, seconds=1.0, rate=16000):
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * rate)) / rate
    sf.write(str(path), 0.1 * np.sin(2 * np.pi * 300 * t), rate)


@pytest.fixture()
def speech_commands(tmp_path):
    """A miniature Speech Commands v0.01 folder."""
    root = tmp_path / "speech_commands"
    for word in ("yes", "stop", "marvin"):
        for speaker in ("aaaa1111", "bbbb2222", "cccc3333"):
            _tone(root / word / f"{speaker}_nohash_0.wav")
    _tone(root / "_background_noise_" / "white_noise.wav", seconds=3.0)
    (root / "yes" / "dddd4444_nohash_0.wav").write_bytes(b"not audio")
    (root / "validation_list.txt").write_text("yes/bbbb2222_nohash_0.wav\n")
    (root / "testing_list.txt").write_text(
        "yes/cccc3333_nohash_0.wav\nmarvin/cccc3333_nohash_0.wav\n"
    )
    return root


def test_speech_commands_protocol(speech_commands, tmp_path):
    save = tmp_path / "save"
    counts = prepare_speech_commands(speech_commands, save, silence_fraction=0.5)
    train, valid, test = (_rows(save / f"{s}.csv") for s in ("train", "valid", "test"))
    # 9 good clips (one corrupt file left out): 1 valid, 2 test, 6 train.
    train_words = [r["label"] for r in train if r["label"] != "_silence_"]
    assert sorted(train_words) == sorted(
        ["yes", "stop", "stop", "stop"] + 2 * ["_unknown_"]
    )
    assert [r["label"] for r in valid if r["label"] != "_silence_"] == ["yes"]
    assert sorted(r["label"] for r in test if r["label"] != "_silence_") == [
        "_unknown_",
        "yes",
    ]
    silence = [r for r in train if r["label"] == "_silence_"]
    assert len(silence) == 3 and counts["train"] == 9
    assert sf.info(silence[0]["wav"]).frames == 16000
    assert {r["label"] for r in train + valid + test} <= set(LABELS)
    # Already prepared with the same options: nothing to do.
    assert prepare_speech_commands(speech_commands, save, silence_fraction=0.5) == {}


def test_separate_test_release_is_used_as_test_set(speech_commands, tmp_path):
    release = tmp_path / "test_release"
    _tone(release / "_silence_" / "a_nohash_0.wav")
    _tone(release / "_unknown_" / "b_nohash_0.wav")
    _tone(release / "go" / "c_nohash_0.wav")
    save = tmp_path / "save"
    prepare_speech_commands(speech_commands, save, test_folder=release)
    labels = sorted(r["label"] for r in _rows(save / "test.csv"))
    assert labels == ["_silence_", "_unknown_", "go"]


@pytest.mark.slow
def test_kws_recipe_on_builtin_keywords(recipe_run):
    out, _ = recipe_run("recipes/SpeechCommands/KWS/hparams/kws_mean_pool.yaml")
    results = json.loads((out / "test_results.json").read_text())
    test = results["results"]["test"]
    clips = len(_rows(out / "save" / "test.csv"))
    assert results["metric"] == "accuracy" and test["utterances"] == clips >= 1
    # An accuracy is a number of correct clips out of the test clips.
    correct = test["accuracy"] * clips / 100
    assert abs(correct - round(correct)) < 1e-3 and 0 <= round(correct) <= clips
    assert results["upstream"]["kind"] == "hf:wavlm"
    train = _rows(out / "save" / "train.csv")
    assert {r["label"] for r in train} <= set(LABELS[:10])
    weights = json.loads((out / "layer_weights.json").read_text())["weights"]
    states = FrozenSSLTeacher("builtin:tiny-wavlm").num_hidden_states
    assert len(weights) == states and abs(sum(weights) - 1.0) < 1e-5
    assert (out / "layer_weights.png").stat().st_size > 0
    assert "epoch: 1" in (out / "train_log.txt").read_text()
    # The classes are the training manifest's labels.
    encoder = CategoricalEncoder()
    encoder.load(out / "save" / "label_encoder.txt")
    assert set(encoder.lab2ind) == {r["label"] for r in train}


@pytest.fixture()
def intents(tmp_path):
    """Manifests with a label set of our own (intents), wav paths relative."""
    folder = tmp_path / "intents"
    labels = ["play_music", "lights:on", "seven"]
    counts = {"train": 4, "valid": 1, "test": 2}
    for split, count in counts.items():
        rows = []
        for index, label in enumerate(labels):
            for take in range(count):
                name = f"{split}_{index}_{take}.wav"
                _tone(folder / "audio" / name, seconds=0.5 + 0.1 * take)
                rows.append([f"{split}-{index}-{take}", f"audio/{name}", label])
        write_manifest(folder / f"{split}.csv", ["ID", "wav", "label"], rows)
    return folder, labels


@pytest.mark.slow
def test_kws_recipe_takes_any_label_set_from_manifests(intents, tiny_wavlm, tmp_path):
    folder, labels = intents
    out = tmp_path / "intent_run"
    yaml = "recipes/SpeechCommands/KWS/hparams/kws_mean_pool.yaml"
    args = recipe_args(yaml, out, folder, upstream_source=tiny_wavlm)
    run_recipe(yaml, args)
    encoder = CategoricalEncoder()
    encoder.load(out / "save" / "label_encoder.txt")
    assert set(encoder.lab2ind) == set(labels)
    test = json.loads((out / "test_results.json").read_text())["results"]["test"]
    assert test["utterances"] == 6
    train = _rows(out / "save" / "train.csv")
    assert all(Path(r["wav"]).is_absolute() and float(r["duration"]) > 0 for r in train)


def test_unseen_test_label_is_named(intents, tmp_path):
    folder, _ = intents
    rows = _rows(folder / "test.csv")
    rows[0]["label"] = "never_trained"
    write_manifest(
        folder / "test.csv", ["ID", "wav", "label"], [list(r.values()) for r in rows]
    )
    with pytest.raises(ValueError, match="never_trained"):
        prepare_speech_commands(folder, tmp_path / "save")
