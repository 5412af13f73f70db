"""Emotion recognition: IEMOCAP preparation (labels, folds), layout errors, analog."""

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from recipe_runner import recipe_args, run_recipe

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "IEMOCAP" / "ER"
YAML = "recipes/IEMOCAP/ER/hparams/er_mean_pool.yaml"
sys.path.insert(0, str(RECIPE))

from iemocap_prepare import prepare_iemocap  # noqa: E402


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _iemocap(root, labels=("neu", "exc", "ang", "sad", "fru", "hap")):
    """Five sessions; per session one dialog with one utterance per label."""
    for session in range(1, 6):
        dialog = f"Ses0{session}F_impro01"
        lines = []
        for index, label in enumerate(labels):
            utt = f"{dialog}_F{index:03d}"
            wav = root / f"Session{session}/sentences/wav/{dialog}/{utt}.wav"
            wav.parent.mkdir(parents=True, exist_ok=True)
            sf.write(str(wav), np.zeros(8000, dtype="float32"), 16000)
            lines.append(f"[{index}.0 - {index}.5]\t{utt}\t{label}\t[2.5, 2.5, 2.5]")
        lines.append(f"[9.0 - 9.5]\t{dialog}_M000\tneu\t[2.5, 2.5, 2.5]")  # no audio
        folder = root / f"Session{session}/dialog/EmoEvaluation"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{dialog}.txt").write_text("% header\n\n" + "\n\n".join(lines))
    return root


def test_labels_merge_and_folds_by_session(tmp_path):
    root = _iemocap(tmp_path / "IEMOCAP")
    counts = prepare_iemocap(root, tmp_path / "save", valid_fraction=0.2)
    # 5 kept labels of 6 (fru dropped), M000 has no audio: 5 per session.
    assert counts[1] == {"train": 16, "valid": 4, "test": 5}
    for fold in range(1, 6):
        split = {
            s: _rows(tmp_path / f"save/fold{fold}/{s}.csv")
            for s in ("train", "valid", "test")
        }
        assert {r["session"] for r in split["test"]} == {str(fold)}
        others = split["train"] + split["valid"]
        assert str(fold) not in {r["session"] for r in others}
        assert len({r["ID"] for r in others}) == 20
        assert sorted({r["label"] for r in split["test"]}) == [
            "ang",
            "hap",
            "neu",
            "sad",
        ]
        assert sum(r["label"] == "hap" for r in split["test"]) == 2  # hap + exc
    assert prepare_iemocap(root, tmp_path / "save", valid_fraction=0.2) == {}


def test_wrong_layout_is_named(tmp_path):
    root = _iemocap(tmp_path / "IEMOCAP")
    for wav in (root / "Session3").rglob("*.wav"):
        wav.unlink()
    with pytest.raises(FileNotFoundError, match="Session3: no labelled utterance"):
        prepare_iemocap(root, tmp_path / "save")
    (root / "Session4/dialog/EmoEvaluation").rename(root / "Session4/dialog/other")
    with pytest.raises(FileNotFoundError, match="Session4/dialog/EmoEvaluation"):
        prepare_iemocap(root, tmp_path / "save2")


def test_wrong_layout_stops_the_recipe_before_the_model_loads(tmp_path):
    empty = tmp_path / "not_iemocap"
    empty.mkdir()
    # A model source that cannot load: the layout error must come first.
    args = [
        f"--data_folder={empty}",
        "--upstream_source=/no/such/model",
        f"--output_folder={tmp_path / 'out'}",
        "--device=cpu",
    ]
    log = run_recipe(YAML, args, expect_failure=True)
    assert "is not an IEMOCAP root" in log and "Session1/dialog/EmoEvaluation" in log
    assert "/no/such/model" not in log.split("is not an IEMOCAP root")[0][-2000:]


@pytest.mark.slow
def test_er_recipe_on_the_analog_averages_folds(builtin_corpus, tmp_path):
    out = tmp_path / "er"
    run_recipe(YAML, recipe_args(YAML, out, builtin_corpus))
    document = json.loads((out / "test_results.json").read_text())
    test = document["results"]["test"]
    folds = [
        json.loads((out / f"fold{k}/test_results.json").read_text()) for k in (1, 2)
    ]
    accuracies = [f["results"]["test"]["accuracy"] for f in folds]
    assert test["accuracy"] == pytest.approx(sum(accuracies) / 2, abs=1e-4)
    assert test["folds"] == 2 and test["utterances"] == 20  # 2 voices x 5 styles
    assert document["metric"] == "accuracy" and document["higher_is_better"]
    analog = out / "manifests" / "builtin_analog"
    labels = {r["label"] for r in _rows(out / "manifests/fold1/train.csv")}
    assert labels == {"neu", "hap", "ang", "sad"}
    assert (analog / "analog_info.json").is_file()
