"""VoxCeleb1 verification manifests and trial lists (SUPERB ASV protocol).

VoxCeleb1 layout (``--data_folder``)::

    <data_folder>/wav/<speaker>/<video>/<utt>.wav
    <data_folder>/veri_test2.txt    # <1|0> <speaker/video/utt.wav> <...>

The speakers of the trial list (the 40 VoxCeleb1 test speakers for
``veri_test2.txt``, the cleaned official list) are the test set; every other
speaker under ``wav/`` trains (VoxCeleb1 dev, 1,211 speakers). A
deterministic ``valid_fraction`` of each training speaker's utterances is held
out, and a validation trial list is drawn from them (all same-speaker pairs up
to ``num_valid_trials`` / 2, as many different-speaker pairs), for the EER
that picks the checkpoint.

A built-in corpus root (``corpus_info.json``) as ``data_folder`` builds the
VoxCeleb1-layout analog
(:func:`~speechbrain_skill.data.analogs.asv.build_asv_analog`) in
``<save_folder>/builtin_analog`` and prepares that.

Output in ``save_folder``: ``train.csv``, ``valid.csv``, ``test.csv`` (ID,
duration, wav, spk_id; ID = ``speaker--video--utt``) and
``valid_trials.txt``, ``test_trials.txt`` over those IDs.
"""

import hashlib
import itertools
import logging
import random
from pathlib import Path

from speechbrain_skill.data.manifests import (
    already_prepared,
    audio_durations,
    mark_prepared,
    write_manifest,
)
from speechbrain_skill.downstream.verification_metrics import read_trials
from speechbrain_skill.training.checks import DataLayoutError
from speechbrain_skill.training.stage_records import folder_fingerprint

logger = logging.getLogger(__name__)

HEADER = ["ID", "duration", "wav", "spk_id"]
TRIAL_FILE = "veri_test2.txt"
FILES = ("train.csv", "valid.csv", "test.csv", "valid_trials.txt", "test_trials.txt")


def utterance_id(relative):
    """``speaker/video/utt.wav`` -> ``speaker--video--utt``.

    Example
    -------
    >>> utterance_id("id10270/x6uYqmx31kE/00001.wav")
    'id10270--x6uYqmx31kE--00001'
    """
    parts = Path(relative).with_suffix("").parts
    if len(parts) != 3:
        raise ValueError(f"Expected <speaker>/<video>/<utt>.wav, got '{relative}'.")
    return "--".join(parts)


def held_out_ids(rows, fraction):
    """Per speaker, a deterministic ``fraction`` of the utterances, at least two.

    Two held-out utterances make a same-speaker validation trial; a speaker
    keeps at least two utterances for training (none held out below four).

    Example
    -------
    >>> rows = [[f"a{i}", "", "", "a"] for i in range(4)] + [["b1", "", "", "b"]]
    >>> sorted(held_out_ids(rows, 0.1))
    ['a0', 'a2']
    """
    by_speaker = {}
    for row in rows:
        by_speaker.setdefault(row[3], []).append(row[0])
    held = set()
    for ids in by_speaker.values():
        count = min(len(ids) - 2, max(2, round(fraction * len(ids))))
        if count >= 2:
            ordered = sorted(ids, key=lambda i: hashlib.md5(i.encode()).hexdigest())
            held.update(ordered[:count])
    return held


def validation_trials(speaker_of, num_trials, seed):
    """Balanced trials: same-speaker pairs, then as many different-speaker pairs.

    Arguments
    ---------
    speaker_of : dict
        Utterance id -> speaker.
    num_trials : int
        At most this many trials.
    seed : int
        Sampling seed.

    Returns
    -------
    list of (int, str, str)

    Example
    -------
    >>> trials = validation_trials({"a1": "a", "a2": "a", "b1": "b", "b2": "b"}, 10, 0)
    >>> sorted(label for label, _, _ in trials)
    [0, 0, 1, 1]
    """
    rng = random.Random(seed)
    ids = sorted(speaker_of)
    same = [
        (1, a, b)
        for a, b in itertools.combinations(ids, 2)
        if speaker_of[a] == speaker_of[b]
    ]
    rng.shuffle(same)
    same = same[: num_trials // 2]
    different = set()
    attempts = 0
    while len(different) < len(same) and attempts < 100 * max(1, len(same)):
        attempts += 1
        a, b = rng.sample(ids, 2)
        if speaker_of[a] != speaker_of[b]:
            different.add((0, *sorted((a, b))))
    return same + sorted(different)


def prepare_voxceleb1_asv(
    data_folder,
    save_folder,
    trial_file=None,
    valid_fraction=0.05,
    num_valid_trials=2000,
    seed=1986,
    skip_prep=False,
    analog_seed=0,
    num_workers=8,
):
    """Write the verification manifests and trial lists.

    Arguments
    ---------
    data_folder : str
        VoxCeleb1 root (``wav/`` + trial list), or a built-in corpus root.
    save_folder : str
        Where the files go.
    trial_file : str, optional
        Test trial list (default ``<data_folder>/veri_test2.txt``).
    valid_fraction : float
        Share of each training speaker's utterances held out.
    num_valid_trials : int
        Size of the validation trial list (at most).
    seed : int
        Seed of the validation trials.
    skip_prep : bool
        Do nothing.
    analog_seed : int
        Seed of the built-in analog.
    num_workers : int
        Threads reading audio headers.

    Returns
    -------
    dict
        File -> lines written (empty when skipped or already done).

    Example
    -------
    >>> import tempfile
    >>> prepare_voxceleb1_asv("/no/such/folder", tempfile.mkdtemp())
    Traceback (most recent call last):
    ...
    FileNotFoundError: /no/such/folder is not a VoxCeleb1 root: ...
    """
    if skip_prep:
        return {}
    data_folder = Path(data_folder)
    if (data_folder / "corpus_info.json").is_file():
        from speechbrain_skill.data.analogs.asv import build_asv_analog

        data_folder = Path(
            build_asv_analog(Path(save_folder) / "builtin_analog", seed=analog_seed)
        )
        trial_file = None
    trial_file = Path(trial_file) if trial_file else data_folder / TRIAL_FILE
    missing = [str(p) for p in (data_folder / "wav", trial_file) if not p.exists()]
    if missing:
        raise DataLayoutError(
            f"{data_folder} is not a VoxCeleb1 root: missing {' and '.join(missing)} "
            "(expected wav/<speaker>/<video>/<utt>.wav and the trial list "
            "veri_test2.txt, or pass trial_file; a built-in corpus root with "
            "corpus_info.json builds the analog)."
        )
    options = dict(
        data_folder=str(data_folder.resolve()),
        trial_file=str(trial_file.resolve()),
        valid_fraction=valid_fraction,
        num_valid_trials=num_valid_trials,
        seed=seed,
        data_files=folder_fingerprint(data_folder / "wav"),
        trial_files=folder_fingerprint(trial_file),
    )
    if already_prepared(save_folder, options, FILES):
        logger.info("Verification manifests in %s are up to date.", save_folder)
        return {}
    trials = read_trials(trial_file)
    test_paths = sorted({path for _, a, b in trials for path in (a, b)})
    test_speakers = {Path(path).parts[0] for path in test_paths}
    train_paths = sorted(
        str(path.relative_to(data_folder / "wav"))
        for path in (data_folder / "wav").glob("*/*/*.wav")
        if path.relative_to(data_folder / "wav").parts[0] not in test_speakers
    )
    if not train_paths:
        raise DataLayoutError(
            f"{data_folder / 'wav'} has no training speaker (every speaker is in "
            f"{trial_file.name})."
        )
    rows = {
        "test": _rows(data_folder, test_paths, num_workers),
        "train": _rows(data_folder, train_paths, num_workers),
    }
    held_out = held_out_ids(rows["train"], valid_fraction)
    rows["valid"] = [row for row in rows["train"] if row[0] in held_out]
    rows["train"] = [row for row in rows["train"] if row[0] not in held_out]
    counts = {}
    for name in ("train", "valid", "test"):
        counts[f"{name}.csv"] = write_manifest(
            Path(save_folder) / f"{name}.csv", HEADER, rows[name]
        )
    speaker_of = {row[0]: row[3] for row in rows["valid"]}
    lists = {
        "valid_trials.txt": validation_trials(speaker_of, num_valid_trials, seed),
        "test_trials.txt": [
            (label, utterance_id(a), utterance_id(b)) for label, a, b in trials
        ],
    }
    for name, items in lists.items():
        lines = [f"{label} {a} {b}\n" for label, a, b in items]
        (Path(save_folder) / name).write_text("".join(lines))
        counts[name] = len(lines)
    logger.info("ASV preparation: %s", counts)
    mark_prepared(save_folder, options)
    return counts


def _rows(data_folder, relatives, num_workers):
    wavs = [str(data_folder / "wav" / relative) for relative in relatives]
    durations = audio_durations(wavs, num_workers)
    rows = [
        [utterance_id(relative), f"{duration:.4f}", wav, Path(relative).parts[0]]
        for relative, wav, (duration, _) in zip(relatives, wavs, durations)
        if duration is not None
    ]
    if len(rows) < len(relatives):
        logger.warning("%d unusable files left out.", len(relatives) - len(rows))
    return rows


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="VoxCeleb1 verification manifests")
    parser.add_argument("--data_folder", required=True)
    parser.add_argument("--save_folder", required=True)
    parser.add_argument("--trial_file", default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    print(prepare_voxceleb1_asv(**vars(args)))
