"""The built-in corpus (LibriSpeech layout, keywords split) for ASR, KWS and SID."""

from pathlib import Path

from speechbrain_skill.data.synthetic_corpus import generate_corpus

CORPUS_SIZE = dict(
    num_speakers=6,
    train_utterances=8,
    dev_utterances=2,
    test_utterances=2,
    keywords_per_speaker=12,
)


def build_corpus_analog(output, seed=0, workers=2):
    """Generate (or reuse) a small built-in corpus; returns its root.

    The ASR, keyword-spotting and speaker-identification recipes read it
    (their README explain how).
    """
    generate_corpus(output, seed=seed, workers=workers, **CORPUS_SIZE)
    return Path(output)


build_corpus_analog.analog_folder = "corpus_analog"
