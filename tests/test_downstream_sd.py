"""Speaker diarization: DER against an independent implementation of its
definition on hand-made RTTMs, PIT, frame labels, preparation, layout errors."""

import itertools
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from recipe_runner import recipe_args, run_recipe

from speechbrain_skill.downstream.diarization import (
    corpus_der,
    diarization_error,
    frame_labels,
    frames_to_segments,
    pit_bce_loss,
    read_rttm,
    write_rttm,
)

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "LibriMix" / "SD"
YAML = "recipes/LibriMix/SD/hparams/sd_lstm_pit.yaml"
sys.path.insert(0, str(RECIPE))

from librimix_prepare import prepare_librimix_sd  # noqa: E402

STEP = 0.001  # the independent scorer samples time every millisecond


def sampled_der(reference, hypothesis, collar=0.0):
    """The DER definition on a 1 ms grid, best speaker mapping by brute force."""
    end = max(e for _, _, e in [*reference, *hypothesis])
    times = (np.arange(int(round(end / STEP)) + 1) + 0.5) * STEP
    keep = np.ones(len(times), dtype=bool)
    for _, start, stop in reference:
        for edge in (start, stop):
            keep &= ~(np.abs(times - edge) < collar)
    times = times[keep]

    def active(segments):
        out = {}
        for speaker, start, stop in segments:
            mask = out.setdefault(speaker, np.zeros(len(times), dtype=bool))
            mask |= (times >= start) & (times < stop)
        return out

    ref, hyp = active(reference), active(hypothesis)
    ref_names, hyp_names = sorted(ref), sorted(hyp)
    n_ref = sum(ref[r].astype(int) for r in ref_names)
    n_hyp = sum(hyp[h].astype(int) for h in hyp_names) if hyp_names else 0 * n_ref
    best = None
    slots = hyp_names + [None] * len(ref_names)
    for assignment in itertools.permutations(slots, len(ref_names)):
        correct = sum(
            (ref[r] & hyp[h]).astype(int) for r, h in zip(ref_names, assignment) if h
        )
        errors = np.maximum(n_ref, n_hyp) - correct
        total = errors.sum()
        best = total if best is None else min(best, total)
    return 100.0 * best / n_ref.sum()


CASES = {
    "B missed in the overlap": (
        [("A", 0, 10), ("B", 5, 15)],
        [("x", 0, 10), ("y", 10, 15)],
    ),
    "names swapped, one confused piece": (
        [("A", 0.0, 4.0), ("B", 3.0, 8.0), ("A", 9.0, 12.5)],
        [("s2", 0.0, 3.5), ("s1", 3.0, 8.2), ("s2", 8.8, 11.0), ("s1", 11.0, 12.5)],
    ),
    "three hypothesis speakers, false alarm": (
        [("A", 1.0, 6.0), ("B", 4.0, 9.0)],
        [("p", 0.5, 6.0), ("q", 4.2, 9.3), ("r", 2.0, 2.7)],
    ),
    "silence only in the hypothesis": ([("A", 0.0, 2.0), ("B", 2.0, 3.0)], []),
}


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("collar", [0.0, 0.25])
def test_der_equals_the_definition_on_hand_made_rttms(name, collar, tmp_path):
    reference, hypothesis = CASES[name]
    write_rttm(tmp_path / "ref.rttm", {"rec": reference})
    write_rttm(tmp_path / "hyp.rttm", {"rec": hypothesis} if hypothesis else {})
    ref = read_rttm(tmp_path / "ref.rttm")["rec"]
    hyp = read_rttm(tmp_path / "hyp.rttm").get("rec", [])
    ours = diarization_error(ref, hyp, collar)["DER"]
    assert ours == pytest.approx(sampled_der(ref, hyp, collar), abs=0.05)


def test_der_hand_worked_values():
    ref, hyp = CASES["B missed in the overlap"]
    result = diarization_error(ref, hyp)
    assert (result["missed"], result["false_alarm"], result["confusion"]) == (5, 0, 0)
    assert result["DER"] == pytest.approx(25.0)  # 5 s of 20 s speaker time
    assert diarization_error([("A", 0, 10)], [("x", 0, 10), ("y", 0, 5)])["DER"] == 50.0
    assert diarization_error([("A", 0, 4)], [("x", 0, 4)])["DER"] == 0.0
    # Confusion: the best mapping keeps A=x, so B's 2 s said by x are confused.
    result = diarization_error([("A", 0, 6), ("B", 6, 8)], [("x", 0, 8)])
    assert result["confusion"] == pytest.approx(2.0) and result["DER"] == 25.0
    # Collar 0.5: 1 s around each of A's two boundaries is not scored.
    assert diarization_error([("A", 1, 5)], [("x", 1.4, 5)], 0.5)["DER"] == 0.0
    assert corpus_der([(ref, hyp), ([("A", 0, 20)], [("z", 0, 20)])]) == 12.5


def test_frame_labels_round_trip_and_pit():
    reference = [("A", 0.1, 0.6), ("B", 0.4, 1.0)]
    labels = frame_labels(reference, 50, ["A", "B"])
    assert labels.sum(0).tolist() == [25.0, 30.0]  # 0.5 s and 0.6 s of 20 ms frames
    segments = frames_to_segments(labels.numpy(), ["x", "y"])
    assert diarization_error(reference, segments)["DER"] == pytest.approx(0.0, abs=1e-6)
    torch.manual_seed(0)
    logits = torch.randn(3, 50, 2)
    batch = labels.expand(3, 50, 2)
    lengths = torch.tensor([50, 30, 12])
    loss = pit_bce_loss(logits, batch, lengths)
    assert float(loss) == pytest.approx(
        float(pit_bce_loss(logits, batch.flip(-1), lengths))
    )
    # Frames past each length do not count.
    scrambled = logits.clone()
    scrambled[1, 30:] = 99.0
    assert float(pit_bce_loss(scrambled, batch, lengths)) == pytest.approx(float(loss))


def _sd_folder(root):
    for split in ("train", "dev", "test"):
        folder = root / split
        (folder / "wavs").mkdir(parents=True)
        sf.write(str(folder / "wavs/r1.wav"), np.zeros(16000, dtype="float32"), 16000)
        sf.write(str(folder / "wavs/r2.wav"), np.zeros(16000, dtype="float32"), 16000)
        (folder / "wav.scp").write_text("r1 wavs/r1.wav\nr2 wavs/r2.wav\n")
        write_rttm(folder / "rttm", {"r1": [("A", 0.1, 0.5), ("B", 0.3, 0.9)]})
    return root


def test_preparation_reads_wav_scp_and_rttm(tmp_path):
    root = _sd_folder(tmp_path / "sd")
    counts = prepare_librimix_sd(root, tmp_path / "save")
    assert counts == {"train": 1, "dev": 1, "test": 1}  # r2 has no RTTM segments
    row = (tmp_path / "save/test.csv").read_text().splitlines()[1]
    assert row.startswith("r1,1.0000,") and str(root / "test/wavs/r1.wav") in row
    segments = json.loads(row.split(",", 3)[3].strip('"').replace('""', '"'))
    assert segments == [["A", 0.1, 0.5], ["B", 0.3, 0.9]]
    (root / "dev/wav.scp").write_text("r1 sox in.wav -t wav - |\n")
    with pytest.raises(ValueError, match="piped commands"):
        prepare_librimix_sd(root, tmp_path / "save2")


def test_wrong_layout_stops_the_recipe_before_the_model_loads(tmp_path):
    root = _sd_folder(tmp_path / "sd")
    (root / "dev/rttm").unlink()
    args = [f"--data_folder={root}", "--upstream_source=/no/such/model",
            f"--output_folder={tmp_path / 'out'}", "--device=cpu"]  # fmt: skip
    log = run_recipe(YAML, args, expect_failure=True)
    assert "is not a SUPERB SD data folder" in log and "dev/rttm (missing)" in log


@pytest.mark.slow
def test_sd_recipe_on_the_analog(builtin_corpus, tmp_path):
    out = tmp_path / "sd"
    run_recipe(YAML, recipe_args(YAML, out, builtin_corpus))
    document = json.loads((out / "test_results.json").read_text())
    test = document["results"]["test"]
    assert document["metric"] == "DER" and document["higher_is_better"] is False
    assert test["recordings"] == 4 and test["DER"] <= test["DER_at_0.5"]
    rttm = read_rttm(out / "save/builtin_analog/test/rttm")
    assert len(rttm) == 4 and all(len({s[0] for s in v}) == 2 for v in rttm.values())


def test_grid_filters_decisions_as_s3prl_make_rttm():
    """Threshold, then scipy.signal.medfilt over time (s3prl's make_rttm.py)."""
    from scipy.signal import medfilt

    from speechbrain_skill.downstream.diarization import grid_der

    rng = np.random.default_rng(0)
    probs = rng.random((60, 2))
    reference = [("A", 0.1, 0.7), ("B", 0.5, 1.1)]
    grid = grid_der([(probs, reference)])
    for threshold in (0.3, 0.5, 0.7):
        decisions = medfilt((probs > threshold).astype(int), (11, 1))
        hypothesis = frames_to_segments(decisions, ["p", "q"])
        expected = corpus_der([(reference, hypothesis)])
        assert grid[(threshold, 11)] == pytest.approx(expected)
    assert len(grid) == 10 and min(grid.values()) >= 0
