"""LibriSpeech (and built-in corpus) preparation: split folders -> csv manifests.

Each requested split folder (``train-clean-100``, ``dev-clean``, ...) under
``data_folder`` becomes ``<save_folder>/<split>.csv`` with the columns
ID, duration, wav, spk_id, wrd. Audio headers are checked while durations are
read: missing, unreadable, empty and too-short files are left out, counted and
listed in ``<save_folder>/excluded.csv``. Work is skipped when the manifests
exist and were made with the same options from the same files (names, sizes
and modification times of everything in the split folders).

The built-in corpus (``python -m speechbrain_skill.data.synthetic_corpus``) has
the same layout, so this runs unchanged on both.
"""

import logging
from pathlib import Path

from speechbrain_skill.data.manifests import (
    EXCLUDED_FILE,
    already_prepared,
    audio_durations,
    mark_prepared,
    read_manifest,
    write_manifest,
)
from speechbrain_skill.training.checks import DataLayoutError
from speechbrain_skill.training.stage_records import folder_fingerprint

logger = logging.getLogger(__name__)
HEADER = ["ID", "duration", "wav", "spk_id", "wrd"]


def prepare_librispeech(
    data_folder,
    save_folder,
    tr_splits=(),
    dev_splits=(),
    te_splits=(),
    merge_name=None,
    skip_prep=False,
    num_workers=8,
):
    """Write one csv manifest per split (and optionally a merged train csv).

    Arguments
    ---------
    data_folder : str
        Folder holding the split folders (e.g. ``/data/LibriSpeech``).
    save_folder : str
        Where the csv files go.
    tr_splits, dev_splits, te_splits : sequence of str
        Split folder names.
    merge_name : str, optional
        Also write the train splits merged into ``<save_folder>/<merge_name>``
        (e.g. ``train.csv``).
    skip_prep : bool
        Do nothing (the manifests are provided otherwise).
    num_workers : int
        Threads reading audio headers.

    Returns
    -------
    dict
        Split name -> number of utterances written (empty when skipped).

    Example
    -------
    >>> import tempfile
    >>> save = tempfile.mkdtemp()
    >>> prepare_librispeech("/no/such/folder", save, dev_splits=["dev-clean"])
    Traceback (most recent call last):
    ...
    FileNotFoundError: LibriSpeech split folder not found: /no/such/folder/dev-clean ...
    """
    if skip_prep:
        return {}
    splits = [*tr_splits, *dev_splits, *te_splits]
    missing = [s for s in splits if not (Path(data_folder) / s).is_dir()]
    if missing:
        raise DataLayoutError(
            "LibriSpeech split folder not found: "
            + ", ".join(str(Path(data_folder) / s) for s in missing)
            + " (check --data_folder; it must contain the split folders)."
        )
    options = dict(
        data_folder=str(Path(data_folder).resolve()),
        splits=splits,
        merge_name=merge_name,
    )
    # The file list (names, sizes, times): added or deleted files prepare again.
    for split in splits:
        options[f"files in {split}"] = folder_fingerprint(Path(data_folder) / split)
    save_folder = Path(save_folder)
    names = [f"{split}.csv" for split in splits] + ([merge_name] if merge_name else [])
    if already_prepared(save_folder, options, names):
        logger.info(
            "Manifests in %s match the options; skipping preparation.", save_folder
        )
        return {}
    save_folder.mkdir(parents=True, exist_ok=True)
    counts, excluded = {}, []
    for split in splits:
        rows, bad = _split_rows(Path(data_folder) / split, num_workers)
        write_manifest(save_folder / f"{split}.csv", HEADER, rows)
        counts[split] = len(rows)
        excluded.extend((split, *item) for item in bad)
        logger.info("%s: %d utterances, %d excluded", split, len(rows), len(bad))
    if merge_name:
        merged = [
            [row[column] for column in HEADER]
            for split in tr_splits
            for row in read_manifest(save_folder / f"{split}.csv")
        ]
        write_manifest(save_folder / merge_name, HEADER, merged)
    # Read back by the run report (data.manifests.count_exclusions).
    write_manifest(save_folder / EXCLUDED_FILE, ["split", "wav", "reason"], excluded)
    if excluded:
        logger.warning(
            "%d audio files were excluded (see %s).",
            len(excluded),
            save_folder / EXCLUDED_FILE,
        )
    mark_prepared(save_folder, options)
    return counts


def _read_transcripts(split_dir):
    texts = {}
    for trans in sorted(split_dir.glob("*/*/*.trans.txt")):
        for line in trans.read_text().splitlines():
            if line.strip():
                utt_id, _, words = line.strip().partition(" ")
                texts[utt_id] = (trans.parent, words)
    return texts


def _split_rows(split_dir, num_workers):
    texts = sorted(_read_transcripts(split_dir).items())
    wavs = [folder / f"{utt_id}.flac" for utt_id, (folder, _) in texts]
    rows, bad = [], []
    checked = audio_durations(wavs, num_workers=num_workers)
    for (utt_id, (_, words)), wav, (duration, reason) in zip(texts, wavs, checked):
        if duration is None:
            bad.append((str(wav), reason))
            continue
        speaker = utt_id.split("-")[0]
        rows.append([utt_id, f"{duration:.4f}", str(wav.resolve()), speaker, words])
    return rows, bad


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="LibriSpeech -> csv manifests")
    parser.add_argument("--data_folder", required=True)
    parser.add_argument("--save_folder", required=True)
    parser.add_argument("--splits", nargs="+", default=["train-clean-100", "dev-clean"])
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    print(
        prepare_librispeech(args.data_folder, args.save_folder, tr_splits=args.splits)
    )
