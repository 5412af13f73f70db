import csv
import shutil

import numpy as np
import pytest
import soundfile as sf
from librispeech_prepare import prepare_librispeech


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_manifest_matches_audio(manifests, builtin_corpus):
    rows = _rows(manifests / "train-clean-100.csv")
    assert list(rows[0]) == ["ID", "duration", "wav", "spk_id", "wrd"]
    assert len(rows) == 16
    transcripts = {}
    for trans in builtin_corpus.glob("train-clean-100/*/*/*.trans.txt"):
        for line in trans.read_text().splitlines():
            utt, words = line.split(" ", 1)
            transcripts[utt] = words
    for row in rows:
        info = sf.info(row["wav"])
        assert float(row["duration"]) == pytest.approx(
            info.frames / info.samplerate, abs=1e-4
        )
        assert row["spk_id"] == row["ID"].split("-")[0]
        assert row["wrd"] == transcripts[row["ID"]]
    assert len(_rows(manifests / "dev-clean.csv")) == 8


def _copy_split(builtin_corpus, tmp_path):
    root = tmp_path / "LibriSpeech"
    shutil.copytree(builtin_corpus / "dev-clean", root / "dev-clean")
    return root


def test_skips_when_options_match_and_redoes_when_not(builtin_corpus, tmp_path):
    root = _copy_split(builtin_corpus, tmp_path)
    save = tmp_path / "save"
    first = prepare_librispeech(root, save, dev_splits=["dev-clean"])
    assert first == {"dev-clean": 8}
    assert prepare_librispeech(root, save, dev_splits=["dev-clean"]) == {}
    shutil.copytree(root / "dev-clean", root / "test-clean")
    again = prepare_librispeech(
        root, save, dev_splits=["dev-clean"], te_splits=["test-clean"]
    )
    assert again == {"dev-clean": 8, "test-clean": 8}


def test_missing_split_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="train-other-500.*--data_folder"):
        prepare_librispeech(tmp_path, tmp_path / "save", tr_splits=["train-other-500"])


def test_bad_files_are_excluded_and_listed(builtin_corpus, tmp_path):
    root = _copy_split(builtin_corpus, tmp_path)
    flacs = sorted((root / "dev-clean").glob("*/*/*.flac"))
    flacs[0].write_bytes(b"not audio at all")  # corrupt
    flacs[1].write_bytes(b"")  # empty (0 bytes)
    sf.write(str(flacs[2]), np.zeros(160, dtype="float32"), 16000)  # 0.01 s
    flacs[3].unlink()  # listed in the transcript, missing on disk
    counts = prepare_librispeech(root, tmp_path / "save", dev_splits=["dev-clean"])
    assert counts == {"dev-clean": 4}
    excluded = _rows(tmp_path / "save" / "excluded.csv")
    reasons = {row["wav"].rsplit("/", 1)[1]: row["reason"] for row in excluded}
    assert reasons[flacs[0].name].startswith("unreadable")
    assert reasons[flacs[1].name].startswith("unreadable")
    assert reasons[flacs[2].name].startswith("too short")
    assert reasons[flacs[3].name] == "missing"


def test_adding_or_deleting_data_files_prepares_again(builtin_corpus, tmp_path):
    # Issue 12 case 2: the options alone (folder path, splits) used to decide,
    # so files added or deleted after the first preparation were ignored.
    root = _copy_split(builtin_corpus, tmp_path)
    save = tmp_path / "save"
    assert prepare_librispeech(root, save, dev_splits=["dev-clean"]) == {"dev-clean": 8}
    chapter = sorted((root / "dev-clean").glob("*/*"))[0]
    trans = next(chapter.glob("*.trans.txt"))
    utt = f"{chapter.parent.name}-{chapter.name}-9999"
    sf.write(str(chapter / f"{utt}.flac"), np.zeros(16000, dtype="float32"), 16000)
    trans.write_text(trans.read_text() + f"{utt} A NEW SENTENCE\n")
    assert prepare_librispeech(root, save, dev_splits=["dev-clean"]) == {"dev-clean": 9}
    assert utt in {row["ID"] for row in _rows(save / "dev-clean.csv")}
    removed = sorted(chapter.glob("*.flac"))[0]
    removed.unlink()
    assert prepare_librispeech(root, save, dev_splits=["dev-clean"]) == {"dev-clean": 8}
    ids = {row["ID"] for row in _rows(save / "dev-clean.csv")}
    assert utt in ids and removed.stem not in ids
    # Unchanged data: skipped again.
    assert prepare_librispeech(root, save, dev_splits=["dev-clean"]) == {}
