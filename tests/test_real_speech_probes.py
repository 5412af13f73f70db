"""The real-speech probe benchmark's speaker split: the two folds."""

import sys
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))

import real_speech_probes  # noqa: E402

from speechbrain_skill.data.manifests import read_manifest  # noqa: E402


def _ids(path):
    return sorted(row["ID"] for row in read_manifest(path))


def test_the_two_speaker_folds_swap_fit_and_score(tmp_path):
    audio = tmp_path / "audio"
    for speaker in ("19", "27"):
        folder = audio / speaker / "1"
        folder.mkdir(parents=True)
        for utt in range(4):
            sf.write(folder / f"{speaker}-1-{utt:04d}.flac", np.zeros(1600), 16000)
    folds = []
    for fit_last in (False, True):
        out = tmp_path / f"fold_{fit_last}"
        out.mkdir()
        counts = real_speech_probes.speaker_split(
            audio, out / "fit.csv", out / "score.csv", 2, fit_last=fit_last
        )
        assert counts == (2, 4, 4)
        folds.append((_ids(out / "fit.csv"), _ids(out / "score.csv")))
    (fit_first, score_first), (fit_last, score_last) = folds
    # first two utterances of each speaker fit in fold 1, the last two in fold 2
    assert fit_first == ["19-1-0000", "19-1-0001", "27-1-0000", "27-1-0001"]
    assert fit_last == score_first and score_last == fit_first
