"""IEMOCAP emotion manifests: four classes, five folds by session (SUPERB ER).

IEMOCAP release layout::

    <data_folder>/Session<k>/sentences/wav/<dialog>/<utterance>.wav
    <data_folder>/Session<k>/dialog/EmoEvaluation/<dialog>.txt

Each ``EmoEvaluation`` line ``[start - end]<TAB>utterance<TAB>label<TAB>[v, a, d]``
gives the consensus label. As SUPERB: only ``neu``, ``hap``, ``ang``, ``sad``
and ``exc`` are kept, ``exc`` (excitement) is merged into ``hap``; fold k
tests on session k and trains on the four others, of which a seeded
``valid_fraction`` (0.2) is held out for validation.

A built-in corpus root (``corpus_info.json``) as ``data_folder`` builds the
IEMOCAP-layout analog (:func:`~speechbrain_skill.data.analogs.er.build_er_analog`)
in ``<save_folder>/builtin_analog`` and prepares that.

Output: ``<save_folder>/fold<k>/{train,valid,test}.csv`` with the columns
ID, duration, wav, label, session.
"""

import logging
import random
import re
from pathlib import Path

from speechbrain_skill.data.manifests import (
    already_prepared,
    audio_durations,
    mark_prepared,
    write_manifest,
)
from speechbrain_skill.training.checks import DataLayoutError
from speechbrain_skill.training.stage_records import folder_fingerprint

logger = logging.getLogger(__name__)

HEADER = ["ID", "duration", "wav", "label", "session"]
SESSIONS = (1, 2, 3, 4, 5)
KEPT_LABELS = {"neu": "neu", "hap": "hap", "exc": "hap", "ang": "ang", "sad": "sad"}
LABELS = ["neu", "hap", "ang", "sad"]
LINE = re.compile(r"^\[[\d.]+ - [\d.]+\]\t(\S+)\t(\S+)\t")


def layout_problems(data_folder):
    """What an IEMOCAP root lacks (empty when the layout is right).

    Example
    -------
    >>> layout_problems("/no/such/folder")[0]
    '/no/such/folder/Session1/dialog/EmoEvaluation (missing)'
    """
    problems = []
    for session in SESSIONS:
        root = Path(data_folder) / f"Session{session}"
        for part in ("dialog/EmoEvaluation", "sentences/wav"):
            if not (root / part).is_dir():
                problems.append(f"{root / part} (missing)")
    return problems


def read_labels(session_folder):
    r"""(utterance, merged label) of every kept utterance of one session.

    Arguments
    ---------
    session_folder : pathlib.Path
        ``<data_folder>/Session<k>``.

    Returns
    -------
    list of (str, str)

    Example
    -------
    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> (root / "dialog/EmoEvaluation").mkdir(parents=True)
    >>> _ = (root / "dialog/EmoEvaluation/Ses01F_x.txt").write_text(
    ...     "[1.0 - 2.0]\tSes01F_x_F000\texc\t[2.5, 2.5, 2.5]\n"
    ...     "[3.0 - 4.0]\tSes01F_x_M000\tfru\t[2.5, 2.5, 2.5]\n")
    >>> read_labels(root)
    [('Ses01F_x_F000', 'hap')]
    """
    found = []
    for path in sorted((session_folder / "dialog" / "EmoEvaluation").glob("*.txt")):
        for line in path.read_text(errors="replace").splitlines():
            match = LINE.match(line)
            if match and match.group(2) in KEPT_LABELS:
                found.append((match.group(1), KEPT_LABELS[match.group(2)]))
    return found


def prepare_iemocap(
    data_folder,
    save_folder,
    valid_fraction=0.2,
    seed=1986,
    skip_prep=False,
    analog_seed=0,
    analog_utterances_per_style=2,
    num_workers=8,
):
    """Write the five folds' train / valid / test manifests.

    Arguments
    ---------
    data_folder : str
        IEMOCAP root, or a built-in corpus root (then the analog is built).
    save_folder : str
        Where the csv files go.
    valid_fraction : float
        Share of each fold's training sessions held out for validation.
    seed : int
        Seed of the validation hold-out.
    skip_prep : bool
        Do nothing.
    analog_seed, analog_utterances_per_style : int
        Settings of the built-in analog.
    num_workers : int
        Threads reading audio headers.

    Returns
    -------
    dict
        Fold -> {split: utterances} (empty when skipped or already done).

    Example
    -------
    >>> import tempfile
    >>> prepare_iemocap("/no/such/folder", tempfile.mkdtemp())
    Traceback (most recent call last):
    ...
    FileNotFoundError: /no/such/folder is not an IEMOCAP root ...
    """
    if skip_prep:
        return {}
    data_folder = Path(data_folder)
    if (data_folder / "corpus_info.json").is_file():
        from speechbrain_skill.data.analogs.er import build_er_analog

        data_folder = Path(
            build_er_analog(
                Path(save_folder) / "builtin_analog",
                seed=analog_seed,
                utterances_per_style=analog_utterances_per_style,
            )
        )
    problems = layout_problems(data_folder)
    if problems:
        raise DataLayoutError(
            f"{data_folder} is not an IEMOCAP root (nor a built-in corpus root "
            f"with corpus_info.json): {'; '.join(problems[:4])}"
            + (f" and {len(problems) - 4} more" if len(problems) > 4 else "")
        )
    options = dict(
        data_folder=str(data_folder.resolve()),
        valid_fraction=valid_fraction,
        seed=seed,
        data_files=folder_fingerprint(data_folder),
    )
    files = [f"fold{k}/{split}.csv" for k in SESSIONS for split in ("train", "test")]
    if already_prepared(save_folder, options, files):
        logger.info("IEMOCAP manifests in %s are up to date.", save_folder)
        return {}
    by_session = {
        session: _session_rows(data_folder, session, num_workers)
        for session in SESSIONS
    }
    counts = {}
    for fold in SESSIONS:
        pool = [row for s in SESSIONS if s != fold for row in by_session[s]]
        random.Random(f"{seed}-{fold}").shuffle(pool)
        num_valid = max(1, round(valid_fraction * len(pool)))
        splits = {
            "train": sorted(pool[num_valid:]),
            "valid": sorted(pool[:num_valid]),
            "test": by_session[fold],
        }
        counts[fold] = {}
        for split, rows in splits.items():
            path = Path(save_folder) / f"fold{fold}" / f"{split}.csv"
            counts[fold][split] = write_manifest(path, HEADER, rows)
    logger.info("IEMOCAP folds (utterances): %s", counts)
    mark_prepared(save_folder, options)
    return counts


def _session_rows(data_folder, session, num_workers):
    root = data_folder / f"Session{session}"
    labelled = read_labels(root)
    wavs = [
        root / "sentences" / "wav" / utt.rsplit("_", 1)[0] / f"{utt}.wav"
        for utt, _ in labelled
    ]
    durations = audio_durations([str(w) for w in wavs], num_workers)
    rows = [
        [utt, f"{duration:.4f}", str(wav), label, str(session)]
        for (utt, label), wav, (duration, _) in zip(labelled, wavs, durations)
        if duration is not None
    ]
    if len(rows) < len(labelled):
        logger.warning(
            "Session%d: %d labelled utterances without usable audio left out.",
            session,
            len(labelled) - len(rows),
        )
    if not rows:
        raise DataLayoutError(
            f"{root}: no labelled utterance ({', '.join(sorted(KEPT_LABELS))}) "
            "with audio under sentences/wav/<dialog>/<utterance>.wav."
        )
    return sorted(rows)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="IEMOCAP emotion manifests")
    parser.add_argument("--data_folder", required=True)
    parser.add_argument("--save_folder", required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    print(prepare_iemocap(**vars(args)))
