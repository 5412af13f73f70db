"""The ASV, SD and ER analogs: deterministic for a seed, in their datasets' layouts,
reused when built again with the same settings."""

import hashlib

import pytest

from speechbrain_skill.data.analogs.asv import build_asv_analog
from speechbrain_skill.data.analogs.er import build_er_analog
from speechbrain_skill.data.analogs.sd import build_sd_analog
from speechbrain_skill.downstream.diarization import read_rttm
from speechbrain_skill.downstream.verification_metrics import read_trials

BUILDERS = {
    "asv": lambda folder, seed: build_asv_analog(
        folder,
        seed,
        num_train_speakers=2,
        num_test_speakers=2,
        utterances_per_speaker=2,
    ),
    "sd": lambda folder, seed: build_sd_analog(
        folder, seed, num_speakers=3, mixtures_per_split=(2, 1, 1)
    ),
    "er": lambda folder, seed: build_er_analog(folder, seed, utterances_per_style=1),
}


def _digest(folder):
    """Relative path -> md5 of every file but the build record."""
    return {
        str(path.relative_to(folder)): hashlib.md5(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != "analog_info.json"
    }


@pytest.mark.slow
@pytest.mark.parametrize("task", sorted(BUILDERS))
def test_analog_is_deterministic_for_a_seed(task, tmp_path):
    first = tmp_path / "a"
    BUILDERS[task](first, 0)
    stamp = (first / "analog_info.json").stat().st_mtime_ns
    BUILDERS[task](first, 0)  # same settings: reused, not rebuilt
    assert (first / "analog_info.json").stat().st_mtime_ns == stamp
    BUILDERS[task](tmp_path / "b", 0)
    BUILDERS[task](tmp_path / "c", 1)
    a, b, c = (_digest(tmp_path / name) for name in "abc")
    # Same seed: the same files, byte for byte (wav.scp holds absolute paths).
    same = {k: v for k, v in a.items() if not k.endswith("wav.scp")}
    assert same == {k: v for k, v in b.items() if not k.endswith("wav.scp")}
    assert a != c
    if task == "asv":
        trials = read_trials(first / "veri_test2.txt")
        assert len(trials) == 6 and sum(label for label, _, _ in trials) == 2
    if task == "sd":
        for recording, segments in read_rttm(first / "test" / "rttm").items():
            (_, s1, e1), (_, s2, e2) = sorted(segments, key=lambda s: s[1])
            assert s1 < s2 < e1, f"{recording}: the two voices must overlap"
    if task == "er":
        assert sum(1 for _ in first.rglob("*.wav")) == 50  # 5 sessions x 2 x 5 styles
