"""Slot-filling manifests from Audio SNIPS, split by voice (SUPERB SF).

Layout read (as SUPERB's ``ctc`` downstream reads Audio SNIPS)::

    <data_folder>/all.iob.snips.txt
        <uid> BOS w1 .. wn EOS<TAB>O l1 .. ln <intent>   (l: O or the slot type)
    <data_folder>/{train,valid,test}/<uid>.wav   (uid starts with the speaker)

The utterances of each split folder are kept when their speaker is in the
split's speaker list (SUPERB: 8 train, 4 valid, 4 test voices). Each
transcript becomes slot-tagged text: words lower-cased, punctuation words
dropped, ``&`` -> ``and``, and a slot's words wrapped in ``B-<type>`` ...
``E-<type>`` (``play B-artist queen E-artist``). Word labels with ``B-`` /
``I-`` prefixes are read too.

Output: ``<save_folder>/{train,valid,test}.csv`` with the columns ID,
duration, wav, spk_id, tagged; unusable audio is listed in ``excluded.csv``,
wav files without a transcript are counted in the log.
"""

import logging
import re
from pathlib import Path

from speechbrain_skill.data.manifests import (
    already_prepared,
    keep_usable,
    mark_prepared,
    write_manifest,
)
from speechbrain_skill.training.checks import DataLayoutError
from speechbrain_skill.training.stage_records import folder_fingerprint

logger = logging.getLogger(__name__)
TRANSCRIPTS = "all.iob.snips.txt"
SPLITS = ("train", "valid", "test")
HEADER = ["ID", "duration", "wav", "spk_id", "tagged"]
PUNCTUATION = set("?!.,;-")


def check_snips_layout(data_folder):
    """Stop, naming the missing part, when ``data_folder`` is not Audio SNIPS.

    Example
    -------
    >>> import tempfile
    >>> check_snips_layout(tempfile.mkdtemp())  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    FileNotFoundError: Not an Audio SNIPS folder: ... all.iob.snips.txt, ...
    """
    folder = Path(data_folder)
    missing = [] if (folder / TRANSCRIPTS).is_file() else [TRANSCRIPTS]
    missing += [f"{split}/" for split in SPLITS if not (folder / split).is_dir()]
    if missing:
        raise DataLayoutError(
            f"Not an Audio SNIPS folder: {folder} is missing "
            + ", ".join(missing)
            + f" (expected {TRANSCRIPTS} and the train/, valid/, test/ wav folders)."
        )


def tag_transcript(line):
    r"""One ``all.iob.snips.txt`` line -> (uid, slot-tagged text).

    Example
    -------
    >>> line = "Ivy-1 BOS Play Abba & co now ! EOS\tO O artist artist artist O O X"
    >>> tag_transcript(line)
    ('Ivy-1', 'play B-artist abba and co E-artist now')
    """
    words_part, _, labels_part = line.rstrip("\r\n").partition("\t")
    uid, *words = words_part.split()
    words, labels = words[1:-1], labels_part.split()[1:-1]
    if len(words) != len(labels):
        raise ValueError(f"{uid}: {len(words)} words but {len(labels)} labels.")
    labels = [re.sub(r"^[BI]-", "", label) for label in labels]
    out = []
    for index, (word, label) in enumerate(zip(words, labels)):
        if word in PUNCTUATION:
            continue
        word = "and" if word == "&" else word.lower()
        if label != "O" and (index == 0 or labels[index - 1] != label):
            out.append(f"B-{label}")
        out.append(word)
        if label != "O" and (index == len(words) - 1 or labels[index + 1] != label):
            out.append(f"E-{label}")
    return uid, " ".join(out)


def prepare_snips(data_folder, save_folder, speakers, skip_prep=False, num_workers=8):
    """Write the train / valid / test manifests (skipped when up to date).

    Arguments
    ---------
    data_folder : str
        Audio SNIPS root.
    save_folder : str
        Where the manifests go.
    speakers : dict
        Split -> list of speaker names (the uid prefixes).
    skip_prep : bool
        Do nothing.
    num_workers : int
        Threads reading audio headers.

    Returns
    -------
    dict
        Split -> utterances (empty when skipped or already prepared).
    """
    if skip_prep:
        return {}
    check_snips_layout(data_folder)
    folder = Path(data_folder).resolve()
    options = dict(
        data_folder=str(folder),
        speakers={split: list(speakers[split]) for split in SPLITS},
        data_files=folder_fingerprint(folder),
    )
    if already_prepared(save_folder, options, [f"{s}.csv" for s in SPLITS]):
        logger.info("Slot-filling manifests in %s are up to date.", save_folder)
        return {}
    transcripts = {}
    with open(folder / TRANSCRIPTS, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                uid, text = tag_transcript(line)
                transcripts[uid] = text
    entries = {}
    for split in SPLITS:
        entries[split], unlabelled = [], 0
        for wav in sorted((folder / split).glob("*.wav")):
            speaker = next((s for s in speakers[split] if wav.stem.startswith(s)), None)
            if speaker is None:
                continue
            if wav.stem not in transcripts:
                unlabelled += 1
                continue
            entries[split].append(
                dict(
                    ID=wav.stem,
                    wav=str(wav),
                    spk_id=speaker,
                    tagged=transcripts[wav.stem],
                )
            )
        if unlabelled:
            logger.warning(
                "%s: %d wav files have no transcript; left out.", split, unlabelled
            )
        if not entries[split]:
            raise ValueError(
                f"No {split} utterance of the speakers {list(speakers[split])} in "
                f"{folder / split} with a transcript in {TRANSCRIPTS}."
            )
    kept = keep_usable(entries, save_folder, num_workers)
    counts = {}
    for split, rows in kept.items():
        counts[split] = write_manifest(
            Path(save_folder) / f"{split}.csv",
            HEADER,
            [[r[c] for c in HEADER] for r in rows],
        )
        logger.info("%s: %d utterances", split, counts[split])
    mark_prepared(save_folder, options)
    return counts
