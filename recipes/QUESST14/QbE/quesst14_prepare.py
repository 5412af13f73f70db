"""Query-by-example manifests from QUESST 2014 (SUPERB QbE: its English part).

Layout read (``quesst14Database`` as distributed)::

    scoring/language_key_utterances.lst   documents: "<path> <language>"
    scoring/language_key_dev.lst, language_key_eval.lst   queries, same format
    scoring/groundtruth_quesst14_dev/*.rttm, groundtruth_quesst14_eval/*.rttm
        "LEXEME <document> <channel> <begin> <duration> <query> ..." per occurrence

A listed path's first folder (the database's own name) is dropped, as
SUPERB does; only ``languages`` are kept (SUPERB: ``nnenglish``).

Output in ``save_folder``: ``documents.csv``, ``dev_queries.csv``,
``eval_queries.csv`` (ID, duration, wav) and ``dev_truth.csv``,
``eval_truth.csv`` (query, document) for the kept files; unusable audio is
listed in ``excluded.csv``.
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
LISTS = {
    "documents": "language_key_utterances.lst",
    "dev_queries": "language_key_dev.lst",
    "eval_queries": "language_key_eval.lst",
}
TRUTH = {"dev": "groundtruth_quesst14_dev", "eval": "groundtruth_quesst14_eval"}


def check_quesst_layout(data_folder):
    """Stop, naming the missing parts, when ``data_folder`` is not QUESST 2014.

    Example
    -------
    >>> import tempfile
    >>> check_quesst_layout(tempfile.mkdtemp())  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    FileNotFoundError: Not a QUESST 2014 folder: ...language_key_utterances.lst, ...
    """
    scoring = Path(data_folder) / "scoring"
    missing = [
        f"scoring/{name}" for name in LISTS.values() if not (scoring / name).is_file()
    ]
    missing += [
        f"scoring/{folder}/*.rttm"
        for folder in TRUTH.values()
        if not list((scoring / folder).glob("*.rttm"))
    ]
    if missing:
        raise DataLayoutError(
            f"Not a QUESST 2014 folder: {data_folder} is missing "
            + ", ".join(missing)
            + "."
        )


def read_list(data_folder, name, languages):
    r"""(utterance name, absolute wav path) of a language-key list.

    Example
    -------
    >>> import tempfile, os
    >>> root = tempfile.mkdtemp(); os.makedirs(os.path.join(root, "scoring"))
    >>> lines = "db/Audio/a.wav nnenglish\ndb/Audio/b.wav xx\n"
    >>> _ = open(os.path.join(root, "scoring", "k.lst"), "w").write(lines)
    >>> found = read_list(root, "k.lst", ["nnenglish"])
    >>> [(name, path.endswith("Audio/a.wav")) for name, path in found]
    [('a', True)]
    """
    items = []
    root = Path(data_folder)
    for line in (root / "scoring" / name).read_text().splitlines():
        fields = line.split()
        if len(fields) < 2 or fields[1] not in languages:
            continue
        path = root / fields[0]
        if not path.exists():
            path = root / re.sub(r"^.*?/", "", fields[0])
        items.append((path.stem, str(path)))
    return items


def read_truth(data_folder, split):
    """(query, document) pairs of the RTTM ground truth of ``dev`` or ``eval``.

    Returns
    -------
    set of tuple
    """
    pairs = set()
    for rttm in sorted((Path(data_folder) / "scoring" / TRUTH[split]).glob("*.rttm")):
        for line in rttm.read_text().splitlines():
            fields = line.split()
            if len(fields) >= 6 and fields[0] == "LEXEME":
                pairs.add((fields[5], fields[1]))
    return pairs


def prepare_quesst14(
    data_folder, save_folder, languages=("nnenglish",), skip_prep=False
):
    """Write the manifests and ground truths (skipped when up to date).

    Arguments
    ---------
    data_folder : str
        QUESST 2014 root.
    save_folder : str
        Where the csv files go.
    languages : sequence of str
        Language keys kept.
    skip_prep : bool
        Do nothing.

    Returns
    -------
    dict
        Set -> number of files kept (empty when skipped or up to date).
    """
    if skip_prep:
        return {}
    check_quesst_layout(data_folder)
    folder = Path(data_folder).resolve()
    options = dict(
        data_folder=str(folder),
        languages=list(languages),
        data_files=folder_fingerprint(folder / "scoring"),
    )
    files = [f"{name}.csv" for name in LISTS] + [
        f"{split}_truth.csv" for split in TRUTH
    ]
    if already_prepared(save_folder, options, files):
        logger.info("QbE manifests in %s are up to date.", save_folder)
        return {}
    entries = {
        name: [dict(ID=utt, wav=wav) for utt, wav in read_list(folder, lst, languages)]
        for name, lst in LISTS.items()
    }
    for name, items in entries.items():
        if not items:
            raise ValueError(
                f"{LISTS[name]} lists no file of the languages {list(languages)}."
            )
    kept = keep_usable(entries, save_folder)
    counts = {}
    for name, rows in kept.items():
        counts[name] = write_manifest(
            Path(save_folder) / f"{name}.csv",
            ["ID", "duration", "wav"],
            [[r["ID"], r["duration"], r["wav"]] for r in rows],
        )
    documents = {r["ID"] for r in kept["documents"]}
    for split in TRUTH:
        queries = {r["ID"] for r in kept[f"{split}_queries"]}
        pairs = sorted(
            (q, d)
            for q, d in read_truth(folder, split)
            if q in queries and d in documents
        )
        write_manifest(
            Path(save_folder) / f"{split}_truth.csv", ["query", "document"], pairs
        )
        logger.info("%s: %d queries, %d occurrences", split, len(queries), len(pairs))
    mark_prepared(save_folder, options)
    return counts
