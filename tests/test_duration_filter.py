"""The duration filter counts what it removes, warns loudly, never leaves nothing."""

import logging

import pytest

from speechbrain_skill.data.dataio import make_audio_dataset
from speechbrain_skill.data.manifests import write_manifest

# Like the corpus of the issue: short clips, a few long enough.
DURATIONS = [0.14, 0.3, 0.5, 0.8, 1.1, 1.4, 2.3, 0.2, 0.6, 0.9]


@pytest.fixture
def manifest(tmp_path):
    rows = [[f"u{i}", d, f"/data/u{i}.flac"] for i, d in enumerate(DURATIONS)]
    path = tmp_path / "train.csv"
    write_manifest(path, ["ID", "duration", "wav"], rows)
    return path


def test_counts_match_the_durations_and_a_loud_warning_above_the_threshold(
    manifest, caplog
):
    with caplog.at_level(logging.INFO):
        data = make_audio_dataset(manifest, min_duration=1.0, warn_fraction=0.2)
    # Counted from the manifest independently of the filter.
    kept = [d for d in DURATIONS if d >= 1.0]
    assert len(data) == len(kept) == 3
    stats = data.duration_filter
    assert (stats["utterances"], stats["kept"], stats["too_short"]) == (10, 3, 7)
    assert stats["too_long"] == 0
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "keeps 3 of 10" in warnings[0].getMessage()
    assert "70%" in warnings[0].getMessage()


def test_below_the_threshold_it_is_logged_not_warned(manifest, caplog):
    with caplog.at_level(logging.INFO):
        data = make_audio_dataset(
            manifest, min_duration=0.15, max_duration=2.0, warn_fraction=0.25
        )
    assert data.duration_filter["too_short"] == 1
    assert data.duration_filter["too_long"] == 1
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert "keeps 8 of 10" in caplog.text


def test_nothing_left_is_a_hard_error_naming_the_setting(manifest):
    with pytest.raises(ValueError, match="min_duration=3.0.*0.14-2.30 s"):
        make_audio_dataset(manifest, min_duration=3.0)
