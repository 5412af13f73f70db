"""Speaker verification: EER / minDCF against hand-worked values and the definition,
VoxCeleb1 preparation, layout errors, the recipe on its analog."""

import csv
import itertools
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from recipe_runner import recipe_args, run_recipe

from speechbrain_skill.downstream.speaker_verification import XVectorHead
from speechbrain_skill.downstream.verification_metrics import equal_error_rate, min_dcf

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "VoxCeleb1" / "ASV"
YAML = "recipes/VoxCeleb1/ASV/hparams/asv_xvector.yaml"
sys.path.insert(0, str(RECIPE))

from voxceleb1_asv_prepare import prepare_voxceleb1_asv  # noqa: E402


def _rates(scores, labels, threshold):
    """Miss and false-alarm rates at one threshold, straight from the definition."""
    targets = [s for s, lab in zip(scores, labels) if lab == 1]
    others = [s for s, lab in zip(scores, labels) if lab == 0]
    miss = sum(s < threshold for s in targets) / len(targets)
    false_alarm = sum(s >= threshold for s in others) / len(others)
    return miss, false_alarm


def _brute_min_dcf(scores, labels, p_target=0.01):
    candidates = [-np.inf, np.inf, *scores]
    costs = []
    for t in candidates:
        miss, fa = _rates(scores, labels, t)
        costs.append(miss * p_target + fa * (1 - p_target))
    return min(costs) / min(p_target, 1 - p_target)


def test_eer_hand_worked_cases():
    # Threshold in (0.35, 0.6]: one target rejected, one non-target accepted.
    scores = [0.9, 0.8, 0.7, 0.35, 0.6, 0.3, 0.2, 0.1]
    labels = [1, 1, 1, 1, 0, 0, 0, 0]
    assert equal_error_rate(scores, labels) == pytest.approx(25.0)
    # Miss stays 1/3 while the false alarms fall from 1/2 to 0: they cross at 1/3.
    assert equal_error_rate([0.9, 0.8, 0.3, 0.5, 0.2], [1, 1, 1, 0, 0]) == (
        pytest.approx(100 / 3)
    )
    assert equal_error_rate([0.9, 0.1], [1, 0]) == 0.0
    assert equal_error_rate([0.1, 0.9], [1, 0]) == 100.0
    with pytest.raises(ValueError, match="both target"):
        equal_error_rate([0.1, 0.2], [1, 1])


def test_eer_where_rates_cross_at_a_threshold_equals_the_definition():
    rng = np.random.default_rng(0)
    for _ in range(20):
        scores = list(np.round(rng.normal(size=12), 3))
        labels = [1] * 6 + [0] * 6
        values = [_rates(scores, labels, t) for t in sorted(scores)]
        equal = [miss for miss, fa in values if miss == fa]
        if equal:  # the curves meet exactly at an operating point
            assert equal_error_rate(scores, labels) == pytest.approx(100 * equal[0])


def test_min_dcf_hand_worked_and_brute_force():
    scores = [0.9, 0.8, 0.7, 0.35, 0.6, 0.3, 0.2, 0.1]
    labels = [1, 1, 1, 1, 0, 0, 0, 0]
    # Reject all: 1.0; accept the three targets above 0.6: P_miss 1/4, P_fa 0.
    assert min_dcf(scores, labels) == pytest.approx(0.25)
    rng = np.random.default_rng(1)
    for p_target in (0.01, 0.05, 0.5):
        scores = list(rng.normal(size=30) + np.repeat([1.0, 0.0], 15))
        labels = [1] * 15 + [0] * 15
        assert min_dcf(scores, labels, p_target) == pytest.approx(
            _brute_min_dcf(scores, labels, p_target)
        )


def test_xvector_head_gives_a_padded_utterance_its_own_embedding():
    torch.manual_seed(0)
    head = XVectorHead(6, tdnn_size=8, pooled_size=12, embedding_size=5).eval()
    feats = torch.randn(1, 30, 6)
    padded = torch.cat([feats, 100 * torch.randn(1, 10, 6)], dim=1)
    with torch.no_grad():
        alone = head(feats, torch.tensor([1.0]))
        batch = head(
            torch.cat([padded, torch.randn(1, 40, 6)]), torch.tensor([0.75, 1.0])
        )
    assert torch.allclose(alone[0], batch[0], atol=1e-5)
    assert not torch.allclose(batch[0], batch[1], atol=1e-3)


def _voxceleb(root, speakers=("id1", "id2", "id3", "id4"), per_speaker=4):
    for speaker in speakers:
        for utt in range(per_speaker):
            path = root / "wav" / speaker / f"v{utt % 2}" / f"{utt:05d}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(str(path), np.zeros(8000, dtype="float32"), 16000)
    test = [f"id4/v{u % 2}/{u:05d}.wav" for u in range(per_speaker)] + [
        "id3/v0/00000.wav"
    ]
    lines = [
        f"{int(a[:3] == b[:3])} {a} {b}" for a, b in itertools.combinations(test, 2)
    ]
    (root / "veri_test2.txt").write_text("\n".join(lines) + "\n")
    return root


def test_voxceleb_preparation_splits_speakers(tmp_path):
    root = _voxceleb(tmp_path / "vox")
    counts = prepare_voxceleb1_asv(root, tmp_path / "save", valid_fraction=0.5)
    # id3 and id4 are in the trial list: test speakers; id1, id2 train.
    assert counts["test.csv"] == 5 and counts["test_trials.txt"] == 10
    with open(tmp_path / "save/train.csv", newline="") as handle:
        train = list(csv.DictReader(handle))
    with open(tmp_path / "save/valid.csv", newline="") as handle:
        valid = list(csv.DictReader(handle))
    assert (
        {r["spk_id"] for r in train} == {r["spk_id"] for r in valid} == {"id1", "id2"}
    )
    assert len(train) == len(valid) == 4
    valid_trials = (tmp_path / "save/valid_trials.txt").read_text().split("\n")[:-1]
    assert sorted(line[0] for line in valid_trials) == ["0", "0", "1", "1"]
    first = (tmp_path / "save/test_trials.txt").read_text().split("\n")[0]
    assert first == "1 id4--v0--00000 id4--v1--00001"


def test_wrong_layout_stops_the_recipe_before_the_model_loads(tmp_path):
    root = _voxceleb(tmp_path / "vox")
    (root / "veri_test2.txt").unlink()
    args = [f"--data_folder={root}", "--upstream_source=/no/such/model",
            f"--output_folder={tmp_path / 'out'}", "--device=cpu"]  # fmt: skip
    log = run_recipe(YAML, args, expect_failure=True)
    assert "is not a VoxCeleb1 root: missing" in log and "veri_test2.txt" in log


@pytest.mark.slow
def test_asv_recipe_on_the_analog(builtin_corpus, tmp_path):
    out = tmp_path / "asv"
    run_recipe(YAML, recipe_args(YAML, out, builtin_corpus))
    document = json.loads((out / "test_results.json").read_text())
    test = document["results"]["test"]
    assert document["metric"] == "EER" and document["higher_is_better"] is False
    assert test["trials"] == 120 and 0.0 <= test["EER"] <= 100.0
    assert test["minDCF"] >= 0.0
