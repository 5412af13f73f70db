"""Speaker-ID manifests: VoxCeleb1 identification split or the built-in corpus.

VoxCeleb1 (SUPERB SID protocol): ``iden_split.txt`` lists every utterance
as ``<set> <speaker>/<video>/<utt>.wav`` with set 1 = train, 2 = valid,
3 = test; the audio is under ``<data_folder>/wav/``. All 1,251 speakers
appear in every set.

Built-in corpus (``python -m speechbrain_skill.data.synthetic_corpus``): its
voices are the speakers; ``train-clean-100``, ``dev-clean`` and
``test-clean`` (same voices, different sentences) are train, valid, test.

Output: ``<save_folder>/{train,valid,test}.csv`` with the columns
ID, duration, wav, spk_id.
"""

import logging
from pathlib import Path

from librispeech_prepare import prepare_librispeech

from speechbrain_skill.data.manifests import (
    already_prepared,
    audio_durations,
    has_labelled_manifests,
    labelled_manifest_rows,
    mark_prepared,
    read_manifest,
    write_manifest,
)
from speechbrain_skill.training.checks import DataLayoutError
from speechbrain_skill.training.stage_records import folder_fingerprint

logger = logging.getLogger(__name__)

HEADER = ["ID", "duration", "wav", "spk_id"]
SPLITS = ("train", "valid", "test")
SPLIT_CODES = {"1": "train", "2": "valid", "3": "test"}
BUILTIN_SPLITS = {
    "train": "train-clean-100",
    "valid": "dev-clean",
    "test": "test-clean",
}


def detect_format(data_folder, split_file=None):
    """``manifests``, ``voxceleb1`` or ``builtin``, from the files in ``data_folder``.

    Example
    -------
    >>> detect_format("/no/such/folder")
    Traceback (most recent call last):
    ...
    FileNotFoundError: /no/such/folder is neither VoxCeleb1 ...
    """
    folder = Path(data_folder)
    if has_labelled_manifests(folder):
        return "manifests"
    if Path(split_file or folder / "iden_split.txt").is_file():
        return "voxceleb1"
    if all((folder / name).is_dir() for name in BUILTIN_SPLITS.values()):
        return "builtin"
    raise DataLayoutError(
        f"{data_folder} is neither VoxCeleb1 (no iden_split.txt; pass split_file "
        "if it is elsewhere), a built-in corpus (train-clean-100, dev-clean, "
        "test-clean folders), nor a folder of train.csv, valid.csv and test.csv "
        "manifests (ID, wav, spk_id)."
    )


def prepare_voxceleb1_sid(
    data_folder,
    save_folder,
    split_file=None,
    data_format="auto",
    skip_prep=False,
    num_workers=8,
):
    """Write train / valid / test manifests for speaker identification.

    Arguments
    ---------
    data_folder : str
        VoxCeleb1 root (with ``wav/``) or built-in corpus root.
    save_folder : str
        Where the csv files go.
    split_file : str, optional
        VoxCeleb1 ``iden_split.txt`` (default: ``<data_folder>/iden_split.txt``).
    data_format : str
        ``auto``, ``voxceleb1`` or ``builtin``.
    skip_prep : bool
        Do nothing.
    num_workers : int
        Threads reading audio headers.

    Returns
    -------
    dict
        Split -> number of utterances (empty when skipped or already done).

    Example
    -------
    >>> import tempfile
    >>> prepare_voxceleb1_sid("/no/such/folder", tempfile.mkdtemp())
    Traceback (most recent call last):
    ...
    FileNotFoundError: /no/such/folder is neither VoxCeleb1 ...
    """
    if skip_prep:
        return {}
    if data_format == "auto":
        data_format = detect_format(data_folder, split_file)
    options = dict(
        data_folder=str(Path(data_folder).resolve()),
        split_file=str(Path(split_file).resolve()) if split_file else None,
        data_format=data_format,
        # The file lists (names, sizes, times): added or deleted files prepare again.
        data_files=folder_fingerprint(data_folder),
        split_files=folder_fingerprint(split_file) if split_file else None,
    )
    files = [f"{split}.csv" for split in SPLITS]
    if already_prepared(save_folder, options, files):
        logger.info("Speaker-ID manifests in %s are up to date.", save_folder)
        return {}
    if data_format == "voxceleb1":
        split_file = split_file or Path(data_folder) / "iden_split.txt"
        rows = _voxceleb_rows(Path(data_folder), Path(split_file), num_workers)
    elif data_format == "builtin":
        rows = _builtin_rows(data_folder, save_folder)
    elif data_format == "manifests":
        rows = labelled_manifest_rows(data_folder, HEADER, "spk_id", num_workers)
    else:
        raise ValueError(
            f"Unknown data_format '{data_format}'; "
            "use auto, manifests, voxceleb1 or builtin."
        )
    counts = {}
    for split in SPLITS:
        path = Path(save_folder) / f"{split}.csv"
        counts[split] = write_manifest(path, HEADER, rows[split])
        logger.info("%s: %d utterances", split, counts[split])
    mark_prepared(save_folder, options)
    return counts


def _voxceleb_rows(folder, split_file, num_workers):
    items = {split: [] for split in SPLITS}
    for line_number, line in enumerate(split_file.read_text().splitlines(), 1):
        if not line.strip():
            continue
        code, _, relative = line.strip().partition(" ")
        if code not in SPLIT_CODES or relative.count("/") != 2:
            raise ValueError(f"{split_file}:{line_number}: unexpected line '{line}'.")
        speaker, video, name = relative.split("/")
        utt = f"{speaker}--{video}--{Path(name).stem}"
        wav = folder / "wav" / relative
        items[SPLIT_CODES[code]].append((utt, str(wav), speaker))
    rows = {}
    for split, found in items.items():
        durations = audio_durations([wav for _, wav, _ in found], num_workers)
        rows[split] = [
            [utt, f"{duration:.4f}", wav, speaker]
            for (utt, wav, speaker), (duration, _) in zip(found, durations)
            if duration is not None
        ]
        if len(rows[split]) < len(found):
            logger.warning(
                "%s: %d unusable files left out.", split, len(found) - len(rows[split])
            )
    return rows


def _builtin_rows(data_folder, save_folder):
    corpus_save = Path(save_folder) / "builtin_manifests"
    prepare_librispeech(
        data_folder,
        corpus_save,
        tr_splits=[BUILTIN_SPLITS["train"]],
        dev_splits=[BUILTIN_SPLITS["valid"]],
        te_splits=[BUILTIN_SPLITS["test"]],
    )
    rows = {}
    for split, folder_name in BUILTIN_SPLITS.items():
        entries = read_manifest(corpus_save / f"{folder_name}.csv")
        rows[split] = [[e[key] for key in HEADER] for e in entries]
    return rows


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Speaker-ID csv manifests")
    parser.add_argument("--data_folder", required=True)
    parser.add_argument("--save_folder", required=True)
    parser.add_argument("--split_file", default=None)
    parser.add_argument("--data_format", default="auto")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    print(prepare_voxceleb1_sid(**vars(args)))
