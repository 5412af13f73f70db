"""Phoneme-recognition analog: the built-in corpus plus a phone lexicon.

The corpus of :mod:`~speechbrain_skill.data.analogs.librispeech` (LibriSpeech
layout) with ``lexicon.txt``, the ARPAbet pronunciations of every word the
generator says (``speechbrain_skill/assets/lexicon``). It exercises the
whole PR pipeline; with ~100 words in fixed sentence frames and TTS voices,
its PER says little about real read speech.
"""

import shutil
from pathlib import Path

from speechbrain_skill.data.analogs.librispeech import build_corpus_analog

LEXICON = (
    Path(__file__).resolve().parents[2] / "assets" / "lexicon" / "builtin_lexicon.txt"
)


def build_pr_analog(output, seed=0, workers=2):
    """The built-in corpus with ``lexicon.txt`` next to its split folders.

    Returns
    -------
    pathlib.Path
        The folder for ``--data_folder`` (the lexicon is ``<it>/lexicon.txt``).
    """
    root = build_corpus_analog(output, seed=seed, workers=workers)
    target = root / "lexicon.txt"
    if not target.is_file() or target.read_bytes() != LEXICON.read_bytes():
        shutil.copyfile(LEXICON, target)
    return root


build_pr_analog.analog_folder = "corpus_analog"
