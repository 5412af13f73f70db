"""benchmarks/real_speech.py on a tiny fake real-audio folder and a recipe run.

The benchmark rebuilds a run's heads and loss from the run's saved
``hyperparams.yaml``; a saved yaml shares objects through anchors and aliases
(``lr_annealing: *id012``), so the selection of entries must keep every alias
bound (issue 25: it crashed with ``found undefined alias``).
"""

import json
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))

import real_speech  # noqa: E402

pytestmark = pytest.mark.slow


def fake_real_audio(corpus, root):
    """``librispeech/train-clean-100/*.flac`` and ``test-other/<spk>/*.flac``."""
    speech = root / "librispeech"
    calibration = speech / "train-clean-100"
    calibration.mkdir(parents=True)
    speakers = {}
    for flac in sorted(Path(corpus).glob("*/*/*/*.flac")):
        speakers.setdefault(flac.name.split("-")[0], []).append(flac)
    for speaker, files in list(speakers.items())[:2]:
        shutil.copy(files[0], calibration / files[0].name)
        folder = speech / "test-other" / speaker
        folder.mkdir(parents=True)
        for flac in files[:7]:  # 5 fit the probe, 2 score it
            shutil.copy(flac, folder / flac.name)
    return root


def test_saved_yaml_with_aliases_gives_the_heads_and_the_loss(recipe_run):
    output, _ = recipe_run("skill_wavlm.yaml")
    saved = (output / "hyperparams.yaml").read_text()
    assert "*id" in saved  # the run's yaml does share objects through aliases
    hparams = real_speech.run_hparams(output / "hyperparams.yaml")
    assert "prune_hparams" not in hparams  # holds objects of another stage
    assert type(hparams["distill_loss"]).__name__ == "DistillationLoss"
    assert hparams["valid_csv"].endswith("dev-clean.csv")


def test_benchmark_runs_on_a_quick_start_like_run(recipe_run, builtin_corpus, tmp_path):
    output, _ = recipe_run("skill_wavlm.yaml")
    audio = fake_real_audio(builtin_corpus, tmp_path / "real_audio")
    result_folder = tmp_path / "result"
    real_speech.main(
        [
            "--real_audio",
            str(audio),
            "--student",
            f"skill={output}",
            "--output",
            str(result_folder),
        ]
    )
    results = json.loads((result_folder / "real_speech.json").read_text())
    probe = results["speaker_probe"]
    assert (probe["speakers"], probe["fit_utterances"], probe["score_utterances"]) == (
        2,
        10,
        4,
    )
    fit = results["feature_distance"]["skill"]["test-other"]
    assert -1.0 <= fit["mean_cosine"] <= 1.0 and fit["mean_l1"] >= 0
    assert "| skill |" in (result_folder / "real_speech.md").read_text()
