import hashlib

import pytest
import soundfile as sf

from speechbrain_skill.data import synthetic_corpus, tts
from speechbrain_skill.data.synthetic_corpus import generate_corpus


def _digest(root):
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.suffix in {".flac", ".txt"}:
            digest.update(path.relative_to(root).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def test_layout_and_format(builtin_corpus):
    # The fixture's folder also holds a tiny Whisper model (conftest), not a split.
    splits = sorted(
        p.name for p in builtin_corpus.iterdir() if any(p.glob("*/*/*.flac"))
    )
    assert splits == ["dev-clean", "keywords", "test-clean", "train-clean-100"]
    flacs = sorted((builtin_corpus / "train-clean-100").glob("*/*/*.flac"))
    assert len(flacs) == 4 * 4
    for flac in flacs:
        speaker, chapter, _ = flac.stem.split("-")
        assert flac.parent.name == chapter and flac.parent.parent.name == speaker
        info = sf.info(str(flac))
        assert info.samplerate == 16000 and info.channels == 1 and info.frames > 8000
    trans = sorted((builtin_corpus / "dev-clean").glob("*/*/*.trans.txt"))
    assert len(trans) == 4
    for path in trans:
        for line in path.read_text().splitlines():
            utt, words = line.split(" ", 1)
            assert (path.parent / f"{utt}.flac").is_file()
            assert words == words.upper() and words.replace(" ", "").isalpha()
    keywords = (builtin_corpus / "keywords").glob("*/*/*.trans.txt")
    for path in keywords:
        for line in path.read_text().splitlines():
            assert len(line.split(" ")) == 2


def test_speakers_differ_and_are_described(builtin_corpus):
    lines = (builtin_corpus / "SPEAKERS.TXT").read_text().splitlines()
    descriptions = [line.split(" | ")[1] for line in lines]
    assert len(set(descriptions)) == len(descriptions) == 4


def test_deterministic_for_a_seed(tmp_path):
    args = dict(num_speakers=2, train_utterances=2, dev_utterances=1, test_utterances=0)
    generate_corpus(tmp_path / "a", seed=3, **args)
    generate_corpus(tmp_path / "b", seed=3, **args)
    generate_corpus(tmp_path / "c", seed=4, **args)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")


def test_clear_error_without_tts(tmp_path, monkeypatch):
    monkeypatch.setattr(tts.shutil, "which", lambda name: None)
    with pytest.raises(tts.TTSUnavailableError, match="flite.*espeak-ng"):
        generate_corpus(tmp_path, num_speakers=1, train_utterances=1)


def test_command_line(tmp_path, capsys):
    argv = ["--output", str(tmp_path), "--num_speakers", "1", "--train_utterances"]
    argv += ["1", "--dev_utterances", "0", "--test_utterances", "0"]
    synthetic_corpus.main(argv)
    out = capsys.readouterr().out
    assert "1 utterances, 1 speakers" in out and "built in" in out
    assert len(list(tmp_path.glob("train-clean-100/*/*/*.flac"))) == 1
    # The same command again reuses the corpus and does not claim to build it.
    synthetic_corpus.main(argv)
    out = capsys.readouterr().out
    assert "reused" in out and "built in" not in out
