"""Phoneme-recognition manifests: LibriSpeech transcripts -> ARPAbet phones (SUPERB PR).

The LibriSpeech splits are prepared by ``librispeech_prepare.py`` (same
layout, same bad-file rules); every transcript is then converted word by
word with a pronunciation lexicon given by path (SUPERB uses the
LibriSpeech lexicon plus G2P pronunciations for the rest, ARPAbet with
stress). Format: one word per line, ``WORD PHONE PHONE ...`` (tab or
spaces); the first pronunciation of a word counts.

An utterance with a word the lexicon lacks is left out, counted and listed
in ``<save_folder>/excluded_oov.csv`` with the words; the log warns loudly
above ``oov_warn_fraction`` and the preparation stops when a split is left
empty.

Output: ``<save_folder>/<split>.csv`` with the columns ID, duration, wav,
spk_id, wrd, phn (space-separated phones), and ``train.csv`` (the training
splits merged).
"""

import logging
from pathlib import Path

from librispeech_prepare import prepare_librispeech

from speechbrain_skill.data.manifests import (
    already_prepared,
    mark_prepared,
    read_manifest,
    write_manifest,
)
from speechbrain_skill.training.checks import DataLayoutError
from speechbrain_skill.training.stage_records import file_fingerprint

logger = logging.getLogger(__name__)
HEADER = ["ID", "duration", "wav", "spk_id", "wrd", "phn"]
OOV_FILE = "excluded_oov.csv"


def check_libriphone_layout(data_folder, lexicon_file, splits):
    """Stop, naming what is missing, before any model loads.

    Example
    -------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> check_libriphone_layout(folder, "/no/lexicon.txt", [])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    FileNotFoundError: Phoneme recognition needs ... lexicon_file /no/lexicon.txt ...
    """
    missing = [] if Path(lexicon_file).is_file() else [f"lexicon_file {lexicon_file}"]
    missing += [
        f"split folder {Path(data_folder) / split}"
        for split in splits
        if not (Path(data_folder) / split).is_dir()
    ]
    if missing:
        raise DataLayoutError(
            "Phoneme recognition needs a LibriSpeech folder and a lexicon; missing: "
            + "; ".join(missing)
            + " (lexicon: 'WORD PHONES' per line, e.g. librispeech-lexicon.txt)."
        )


def read_lexicon(path):
    r"""Word (upper case) -> list of phones; the first pronunciation wins.

    Example
    -------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "lexicon.txt")
    >>> _ = open(path, "w").write("hello\tHH AH0 L OW1\nHELLO  HH EH0 L OW1\n")
    >>> read_lexicon(path)
    {'HELLO': ['HH', 'AH0', 'L', 'OW1']}
    """
    lexicon = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            fields = line.split()
            if len(fields) >= 2:
                lexicon.setdefault(fields[0].upper(), fields[1:])
    if not lexicon:
        raise ValueError(f"The lexicon {path} has no 'WORD PHONES' line.")
    return lexicon


def words_to_phones(words, lexicon):
    """Phones of a transcript, or None and the words the lexicon lacks.

    Example
    -------
    >>> words_to_phones("HI YOU", {"HI": ["HH", "AY1"], "YOU": ["Y", "UW1"]})
    (['HH', 'AY1', 'Y', 'UW1'], [])
    >>> words_to_phones("HI THERE", {"HI": ["HH", "AY1"]})
    (None, ['THERE'])
    """
    missing = [word for word in words.split() if word not in lexicon]
    if missing:
        return None, missing
    return [phone for word in words.split() for phone in lexicon[word]], []


def prepare_libriphone(
    data_folder,
    save_folder,
    lexicon_file,
    tr_splits=("train-clean-100",),
    dev_splits=("dev-clean",),
    te_splits=("test-clean",),
    oov_warn_fraction=0.05,
    skip_prep=False,
):
    """Write phone manifests for every split (skipped when up to date).

    Arguments
    ---------
    data_folder : str
        LibriSpeech root (or the built-in analog).
    save_folder : str
        Where the manifests go.
    lexicon_file : str
        Pronunciation lexicon.
    tr_splits, dev_splits, te_splits : sequence of str
        Split folders.
    oov_warn_fraction : float
        Share of utterances left out for unknown words above which the log warns.
    skip_prep : bool
        Do nothing.

    Returns
    -------
    dict
        Split -> utterances kept (empty when skipped or up to date).
    """
    if skip_prep:
        return {}
    splits = [*tr_splits, *dev_splits, *te_splits]
    check_libriphone_layout(data_folder, lexicon_file, splits)
    # The word manifests: LibriSpeech preparation (own fingerprint and skip).
    prepare_librispeech(
        data_folder,
        save_folder,
        tr_splits=tr_splits,
        dev_splits=dev_splits,
        te_splits=te_splits,
    )
    save = Path(save_folder)
    phone_dir = save / "phones"
    options = dict(
        lexicon=file_fingerprint(lexicon_file),
        words={split: file_fingerprint(save / f"{split}.csv") for split in splits},
    )
    names = [f"{split}.csv" for split in splits] + ["train.csv"]
    if already_prepared(phone_dir, options, names):
        logger.info("Phone manifests in %s are up to date.", phone_dir)
        return {}
    lexicon = read_lexicon(lexicon_file)
    counts, oov_rows, train_rows = {}, [], []
    for split in dict.fromkeys(splits):
        rows = []
        entries = read_manifest(save / f"{split}.csv")
        for entry in entries:
            phones, missing = words_to_phones(entry["wrd"], lexicon)
            if phones is None:
                oov_rows.append([split, entry["ID"], " ".join(missing)])
                continue
            rows.append([entry[c] for c in HEADER[:-1]] + [" ".join(phones)])
        left_out = len(entries) - len(rows)
        if not rows:
            raise ValueError(
                f"{split}: every utterance has words missing from {lexicon_file} "
                f"(see {phone_dir / OOV_FILE}); give a lexicon that covers the corpus."
            )
        if left_out > oov_warn_fraction * len(entries):
            logger.warning(
                "%s: %d of %d utterances left out for words missing from the lexicon!",
                split,
                left_out,
                len(entries),
            )
        counts[split] = write_manifest(phone_dir / f"{split}.csv", HEADER, rows)
        if split in tr_splits:
            train_rows.extend(rows)
    write_manifest(phone_dir / OOV_FILE, ["split", "ID", "missing_words"], oov_rows)
    write_manifest(phone_dir / "train.csv", HEADER, train_rows)
    mark_prepared(phone_dir, options)
    return counts
