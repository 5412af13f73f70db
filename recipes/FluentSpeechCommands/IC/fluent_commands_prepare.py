"""Intent-classification manifests from Fluent Speech Commands (SUPERB IC).

Layout read (the dataset's own, as distributed)::

    <data_folder>/data/train_data.csv, valid_data.csv, test_data.csv
        columns: (index), path, speakerId, transcription, action, object, location
    <data_folder>/<path>   the audio, path relative to data_folder

The built-in analog (``speechbrain_skill.data.analogs.intents``) is written in
the same layout. Output: ``<save_folder>/{train,valid,test}.csv`` with the
columns ID, duration, wav, spk_id, transcription, action, object, location;
unusable audio is left out and listed in ``excluded.csv``.
"""

import csv
import logging
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

SPLIT_FILES = {
    "train": "train_data.csv",
    "valid": "valid_data.csv",
    "test": "test_data.csv",
}
SLOTS = ("action", "object", "location")
REQUIRED_COLUMNS = ("path", "speakerId", "transcription", *SLOTS)
HEADER = ["ID", "duration", "wav", "spk_id", "transcription", *SLOTS]


def check_fluent_layout(data_folder):
    """Stop, naming the missing part, when ``data_folder`` is not the dataset.

    Cheap (reads csv headers only): the recipe calls it before loading a model.

    Example
    -------
    >>> import tempfile
    >>> check_fluent_layout(tempfile.mkdtemp())  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    FileNotFoundError: Not a Fluent Speech Commands folder: ... data/train_data.csv, ...
    """
    folder = Path(data_folder)
    missing = [
        f"data/{name}"
        for name in SPLIT_FILES.values()
        if not (folder / "data" / name).is_file()
    ]
    if missing:
        raise DataLayoutError(
            f"Not a Fluent Speech Commands folder: {folder} is missing "
            + ", ".join(missing)
            + " (expected data/{train,valid,test}_data.csv with the columns "
            + ", ".join(REQUIRED_COLUMNS)
            + ", and the audio at the csv paths)."
        )
    for name in SPLIT_FILES.values():
        with open(folder / "data" / name, newline="") as handle:
            header = next(csv.reader(handle), [])
        absent = [column for column in REQUIRED_COLUMNS if column not in header]
        if absent:
            raise ValueError(f"{folder / 'data' / name} lacks the column(s) {absent}.")


def prepare_fluent_commands(data_folder, save_folder, skip_prep=False, num_workers=8):
    """Write the train / valid / test manifests (skipped when up to date).

    Arguments
    ---------
    data_folder : str
        Fluent Speech Commands root.
    save_folder : str
        Where the manifests go.
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
    check_fluent_layout(data_folder)
    folder = Path(data_folder).resolve()
    options = dict(data_folder=str(folder), data_files=folder_fingerprint(folder))
    if already_prepared(save_folder, options, [f"{s}.csv" for s in SPLIT_FILES]):
        logger.info("Intent manifests in %s are up to date.", save_folder)
        return {}
    entries = {}
    for split, name in SPLIT_FILES.items():
        with open(folder / "data" / name, newline="") as handle:
            reader = csv.DictReader(handle)
            entries[split] = [
                dict(
                    ID=f"{split}-{number:06d}",
                    wav=str(folder / row["path"]),
                    spk_id=row["speakerId"],
                    transcription=row["transcription"],
                    **{slot: row[slot] for slot in SLOTS},
                )
                for number, row in enumerate(reader)
            ]
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
