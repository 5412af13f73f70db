"""csv manifest helpers shared by the downstream data preparation scripts.

Every manifest has at least the columns ID, duration, wav (the layout
:func:`~speechbrain_skill.data.dataio.make_audio_dataset` reads). Audio headers
are checked while durations are read: missing, unreadable, empty and
too-short files are left out and reported, never crash a run later.
"""

import csv
import hashlib
import json
import logging
import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from speechbrain_skill.changes import describe_changes
from speechbrain_skill.data.audio import BadAudioError, inspect_audio, reason_kind

logger = logging.getLogger(__name__)
OPTIONS_FILE = "prepare_options.json"
EXCLUDED_FILE = "excluded.csv"


def write_manifest(path, header, rows):
    """Write rows to a csv atomically (a temporary file, then a rename).

    Arguments
    ---------
    path : str or os.PathLike
        Output csv (folders created).
    header : sequence of str
        Column names.
    rows : iterable of sequence
        One sequence per line, in ``header`` order.

    Returns
    -------
    int
        Number of rows written.

    Example
    -------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "a.csv")
    >>> write_manifest(path, ["ID", "label"], [["u1", "yes"]])
    1
    >>> read_manifest(path)
    [{'ID': 'u1', 'label': 'yes'}]
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = list(rows)
    tmp = f"{path}.tmp"
    with open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    os.replace(tmp, path)
    return len(rows)


def read_manifest(path):
    """Read a csv manifest as a list of dicts (column -> string).

    Arguments
    ---------
    path : str or os.PathLike
        The csv.

    Returns
    -------
    list of dict
    """
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def audio_durations(paths, num_workers=8):
    """Durations of audio files; unusable files get ``None`` and a reason.

    Arguments
    ---------
    paths : sequence of str
        Audio files.
    num_workers : int
        Threads reading headers.

    Returns
    -------
    list of (float or None, str or None)
        (duration in seconds, None) or (None, reason), in input order.

    Example
    -------
    >>> audio_durations(["/no/such.wav"])
    [(None, 'missing')]
    """

    def check(path):
        """The file's audio info, or None and the reason it is excluded."""
        try:
            return inspect_audio(str(path)), None
        except BadAudioError as err:
            logger.warning("Excluding %s: %s", path, err.reason)
            return None, err.reason

    with ThreadPoolExecutor(max_workers=max(1, num_workers)) as pool:
        return list(pool.map(check, paths))


def hash_split(ids, valid_fraction=0.1, test_fraction=0.1):
    """Assign ids to train / valid / test deterministically (by md5 order).

    The order of the ids does not matter; each of valid and test gets at least
    one id when there are at least three.

    Arguments
    ---------
    ids : sequence of str
        Utterance ids.
    valid_fraction, test_fraction : float
        Shares of valid and test.

    Returns
    -------
    dict
        id -> ``train``, ``valid`` or ``test``.

    Example
    -------
    >>> split = hash_split([f"u{i}" for i in range(10)])
    >>> sorted(split.values()).count("train")
    8
    """
    ordered = sorted(ids, key=lambda i: hashlib.md5(str(i).encode()).hexdigest())
    total = len(ordered)
    if total < 3:
        raise ValueError(f"Need at least 3 utterances to split, got {total}.")
    num_test = max(1, round(test_fraction * total))
    num_valid = max(1, round(valid_fraction * total))
    if num_test + num_valid >= total:
        raise ValueError(
            f"valid_fraction={valid_fraction} and test_fraction={test_fraction} "
            f"leave no training data out of {total} utterances."
        )
    split = {}
    for index, utt in enumerate(ordered):
        if index < num_test:
            split[utt] = "test"
        elif index < num_test + num_valid:
            split[utt] = "valid"
        else:
            split[utt] = "train"
    return split


def already_prepared(save_folder, options, files):
    """Whether ``files`` exist in ``save_folder`` and were made with ``options``.

    Put the data folder's fingerprint in ``options``
    (:func:`~speechbrain_skill.training.stage_records.folder_fingerprint`), so
    that adding, deleting or rewriting data files prepares again; what changed
    is logged.

    Arguments
    ---------
    save_folder : str or os.PathLike
        Where the manifests are.
    options : dict
        json-serialisable preparation options.
    files : sequence of str
        Expected file names.

    Returns
    -------
    bool

    Example
    -------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> already_prepared(folder, {"a": 1}, [])
    False
    >>> mark_prepared(folder, {"a": 1})
    >>> already_prepared(folder, {"a": 1}, []), already_prepared(folder, {"a": 2}, [])
    (True, False)
    """
    options_path = Path(save_folder) / OPTIONS_FILE
    if not options_path.is_file():
        return False
    recorded = json.loads(options_path.read_text())
    current = json.loads(json.dumps(options))
    if recorded != current:
        logger.warning(
            "Preparing %s again; changed since the last preparation: %s",
            save_folder,
            "; ".join(describe_changes(recorded, current)),
        )
        return False
    return all((Path(save_folder) / name).is_file() for name in files)


def mark_prepared(save_folder, options):
    """Record the options the manifests in ``save_folder`` were made with.

    Arguments
    ---------
    save_folder : str or os.PathLike
        Where the manifests are.
    options : dict
        json-serialisable preparation options.
    """
    Path(save_folder).mkdir(parents=True, exist_ok=True)
    (Path(save_folder) / OPTIONS_FILE).write_text(json.dumps(options, indent=2))


AUDIO_SUFFIXES = (".flac", ".wav")
LIBRISPEECH_NAME = re.compile(r"^(\d+)-(\d+)-(\d+)$")


def audio_folder_manifest(folder, csv_path, num_workers=8):
    """Write a manifest of every audio file under ``folder`` (any depth).

    Made for folders in the LibriSpeech layout (``<speaker>/<chapter>/
    <speaker>-<chapter>-<utt>.flac``) and for flat folders of ``.flac`` /
    ``.wav`` files alike. The speaker is the first field of a LibriSpeech
    file name, otherwise the name of the file's folder. Unusable files are
    left out and counted.

    Arguments
    ---------
    folder : str or os.PathLike
        Root folder.
    csv_path : str or os.PathLike
        Output csv with the columns ID, duration, wav, spk_id.
    num_workers : int
        Threads reading audio headers.

    Returns
    -------
    written : int
        Utterances in the manifest.
    excluded : int
        Audio files left out (unreadable, empty, too short).

    Example
    -------
    >>> import tempfile, os, numpy, soundfile
    >>> root = tempfile.mkdtemp()
    >>> os.makedirs(os.path.join(root, "19", "198"))
    >>> soundfile.write(os.path.join(root, "19", "198", "19-198-0001.flac"),
    ...                 numpy.zeros(8000), 16000)
    >>> csv_path = os.path.join(root, "all.csv")
    >>> audio_folder_manifest(root, csv_path)
    (1, 0)
    >>> row = read_manifest(csv_path)[0]
    >>> row["ID"], row["duration"], row["spk_id"]
    ('19-198-0001', '0.5000', '19')
    """
    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"Data folder not found: {folder}")
    files = sorted(
        path
        for path in root.rglob("*")
        if path.suffix.lower() in AUDIO_SUFFIXES and path.is_file()
    )
    if not files:
        raise ValueError(f"No {'/'.join(AUDIO_SUFFIXES)} files under {folder}.")
    stems = [path.stem for path in files]
    unique = len(set(stems)) == len(stems)
    rows = []
    durations = audio_durations([str(path) for path in files], num_workers)
    for path, (duration, _) in zip(files, durations):
        if duration is None:
            continue
        name = LIBRISPEECH_NAME.match(path.stem)
        speaker = name.group(1) if name else path.parent.name
        utt = (
            path.stem
            if unique
            else "_".join(path.relative_to(root).with_suffix("").parts)
        )
        rows.append([utt, f"{duration:.4f}", str(path.resolve()), speaker])
    if not rows:
        raise ValueError(
            f"None of the {len(files)} audio files under {folder} is usable."
        )
    written = write_manifest(csv_path, ["ID", "duration", "wav", "spk_id"], rows)
    return written, len(files) - written


LABELLED_SPLITS = ("train", "valid", "test")


def keep_usable(entries, save_folder, num_workers=8, warn_fraction=0.2):
    """Add durations to manifest entries and leave out unusable audio, counted.

    Missing, unreadable, empty and too-short files are left out and listed in
    ``<save_folder>/excluded.csv`` (split, wav, reason); a split losing more
    than ``warn_fraction`` of its files gets a loud warning, a split left
    empty stops the preparation.

    Arguments
    ---------
    entries : dict
        Split -> list of dicts, each with a ``wav`` path.
    save_folder : str or os.PathLike
        Where ``excluded.csv`` goes.
    num_workers : int
        Threads reading audio headers.
    warn_fraction : float
        Share of excluded files above which the log warns.

    Returns
    -------
    dict
        Split -> the usable entries, each with ``duration`` (a string, 4 decimals).

    Example
    -------
    >>> import tempfile, os, numpy, soundfile
    >>> folder = tempfile.mkdtemp()
    >>> good = os.path.join(folder, "a.wav")
    >>> soundfile.write(good, numpy.zeros(8000), 16000)
    >>> kept = keep_usable({"test": [{"wav": good}, {"wav": "/no/b.wav"}]}, folder)
    >>> [e["duration"] for e in kept["test"]], count_exclusions(folder)
    (['0.5000'], {'missing': 1})
    """
    kept, excluded = {}, []
    for split, items in entries.items():
        durations = audio_durations([item["wav"] for item in items], num_workers)
        kept[split] = []
        for item, (duration, reason) in zip(items, durations):
            if duration is None:
                excluded.append([split, item["wav"], reason])
            else:
                kept[split].append(dict(item, duration=f"{duration:.4f}"))
        left_out = len(items) - len(kept[split])
        if not kept[split]:
            raise ValueError(
                f"No usable audio in the {split} split ({len(items)} files listed, "
                f"all left out; see {Path(save_folder) / EXCLUDED_FILE})."
            )
        if left_out > warn_fraction * len(items):
            logger.warning(
                "%s: %d of %d audio files are unusable and left out!",
                split,
                left_out,
                len(items),
            )
    Path(save_folder).mkdir(parents=True, exist_ok=True)
    write_manifest(
        Path(save_folder) / EXCLUDED_FILE, ["split", "wav", "reason"], excluded
    )
    return kept


def has_labelled_manifests(folder):
    """Whether ``folder`` holds ``train.csv``, ``valid.csv`` and ``test.csv``.

    Example
    -------
    >>> has_labelled_manifests("/no/such/folder")
    False
    """
    return all((Path(folder) / f"{s}.csv").is_file() for s in LABELLED_SPLITS)


def labelled_manifest_rows(data_folder, header, label_key, num_workers=8):
    """Rows of a user's ``train.csv`` / ``valid.csv`` / ``test.csv``, any label set.

    The format of the downstream classification recipes: each csv has the
    columns ``ID``, ``wav`` (absolute, or relative to ``data_folder``) and the
    label column ``label_key``; any strings are labels. ``duration`` and other
    columns of ``header`` are optional: durations are read from the audio
    headers (which also leaves out unusable files, counted in the log), other
    missing columns are left empty. Every validation and test label must
    occur in training.

    Arguments
    ---------
    data_folder : str or os.PathLike
        Folder with the three csv files.
    header : sequence of str
        Columns of the rows returned (must include ID, duration, wav, label_key).
    label_key : str
        The label column.
    num_workers : int
        Threads reading audio headers.

    Returns
    -------
    dict
        ``train`` / ``valid`` / ``test`` -> list of rows in ``header`` order.

    Example
    -------
    >>> import tempfile, os, numpy, soundfile
    >>> folder = tempfile.mkdtemp()
    >>> soundfile.write(os.path.join(folder, "a.wav"), numpy.zeros(8000), 16000)
    >>> for split in LABELLED_SPLITS:
    ...     _ = write_manifest(os.path.join(folder, f"{split}.csv"),
    ...                        ["ID", "wav", "label"], [["u1", "a.wav", "seven"]])
    >>> rows = labelled_manifest_rows(folder, ["ID", "duration", "wav", "label"],
    ...                               "label")
    >>> rows["test"][0][1], rows["test"][0][3]
    ('0.5000', 'seven')
    """
    folder = Path(data_folder)
    rows, labels = {}, {}
    for split in LABELLED_SPLITS:
        path = folder / f"{split}.csv"
        entries = read_manifest(path)
        missing = {"ID", "wav", label_key} - set(entries[0] if entries else {})
        if missing:
            raise ValueError(
                f"{path} lacks the column(s) {sorted(missing)}; a manifest needs "
                f"ID, wav and {label_key} (duration and others optional)."
            )
        wavs = [str(folder / entry["wav"]) for entry in entries]  # absolute stays
        durations = audio_durations(wavs, num_workers)
        rows[split] = []
        for entry, wav, (duration, _) in zip(entries, wavs, durations):
            if duration is None:
                continue
            values = dict(entry, wav=str(Path(wav).resolve()))
            values["duration"] = f"{duration:.4f}"
            rows[split].append([values.get(column, "") for column in header])
        labels[split] = {entry[label_key] for entry in entries}
        logger.info("%s: %d of %d utterances usable", path, len(rows[split]), len(wavs))
    for split in ("valid", "test"):
        unseen = sorted(labels[split] - labels["train"])
        if unseen:
            raise ValueError(
                f"{split}.csv has labels that train.csv does not: {unseen[:10]}"
                + (" ..." if len(unseen) > 10 else "")
            )
    return rows


def count_exclusions(save_folder):
    """Files left out by a preparation (its ``excluded.csv``), per kind of reason.

    Arguments
    ---------
    save_folder : str or os.PathLike
        Where the preparation wrote its manifests.

    Returns
    -------
    dict
        Reason kind -> number of files (empty when nothing was excluded or
        the folder has no ``excluded.csv``).

    Example
    -------
    >>> import tempfile, os
    >>> folder = tempfile.mkdtemp()
    >>> _ = write_manifest(os.path.join(folder, EXCLUDED_FILE), ["wav", "reason"],
    ...     [["a.flac", "missing"], ["b.flac", "too short (3 samples)"]])
    >>> count_exclusions(folder)
    {'missing': 1, 'too short': 1}
    """
    path = Path(save_folder) / EXCLUDED_FILE
    counts = {}
    if path.is_file():
        for row in read_manifest(path):
            kind = reason_kind(row["reason"])
            counts[kind] = counts.get(kind, 0) + 1
    return counts
