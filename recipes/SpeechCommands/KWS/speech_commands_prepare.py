"""Keyword-spotting manifests: Speech Commands v1 (12 classes) or the built-in corpus.

Speech Commands v0.01 (SUPERB KS protocol, 12 classes): the ten words yes,
no, up, down, left, right, on, off, stop, go keep their label; every other
word is ``_unknown_``; ``_silence_`` clips are 1-second crops of the
``_background_noise_`` recordings, written to ``<save_folder>/silence/``.
Validation and test utterances are those of the official
``validation_list.txt`` and ``testing_list.txt``; the rest is training data.
When ``test_folder`` points to the separate
``speech_commands_test_set_v0.01`` release (folders per class, including
``_silence_`` and ``_unknown_``), it is the test set instead.

Built-in corpus (``python -m speechbrain_skill.data.synthetic_corpus
--keywords_per_speaker N``): the single-word utterances of its ``keywords``
split, labelled by their transcript and split deterministically into
train / valid / test. It has no ``_unknown_`` or ``_silence_`` examples;
the classifier still has the 12 outputs.

Output: ``<save_folder>/{train,valid,test}.csv`` with the columns
ID, duration, wav, spk_id, label.
"""

import logging
import random
from pathlib import Path

import soundfile as sf
from librispeech_prepare import prepare_librispeech

from speechbrain_skill.data.audio import SAMPLE_RATE, BadAudioError, read_audio
from speechbrain_skill.data.manifests import (
    already_prepared,
    audio_durations,
    has_labelled_manifests,
    hash_split,
    labelled_manifest_rows,
    mark_prepared,
    read_manifest,
    write_manifest,
)
from speechbrain_skill.training.checks import DataLayoutError
from speechbrain_skill.training.stage_records import folder_fingerprint

logger = logging.getLogger(__name__)

KEYWORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
UNKNOWN = "_unknown_"
SILENCE = "_silence_"
LABELS = (*KEYWORDS, UNKNOWN, SILENCE)
HEADER = ["ID", "duration", "wav", "spk_id", "label"]
SPLITS = ("train", "valid", "test")
BACKGROUND = "_background_noise_"


def keyword_label(word):
    """Map a spoken word to its class among the 12.

    Example
    -------
    >>> keyword_label("YES"), keyword_label("marvin"), keyword_label("_silence_")
    ('yes', '_unknown_', '_silence_')
    """
    word = word.strip().lower()
    if word in LABELS:
        return word
    return UNKNOWN


def detect_format(data_folder):
    """``manifests``, ``speech_commands`` or ``builtin``, from ``data_folder``'s files.

    Example
    -------
    >>> detect_format("/no/such/folder")
    Traceback (most recent call last):
    ...
    FileNotFoundError: /no/such/folder is neither Speech Commands ...
    """
    folder = Path(data_folder)
    if has_labelled_manifests(folder):
        return "manifests"
    if (folder / "validation_list.txt").is_file():
        return "speech_commands"
    if (folder / "keywords").is_dir():
        return "builtin"
    raise DataLayoutError(
        f"{data_folder} is neither Speech Commands (no validation_list.txt), a "
        "built-in corpus with a keywords split (generate one with "
        "--keywords_per_speaker > 0), nor a folder of train.csv, valid.csv and "
        "test.csv manifests (ID, wav, label)."
    )


def prepare_speech_commands(
    data_folder,
    save_folder,
    test_folder=None,
    data_format="auto",
    silence_fraction=0.1,
    valid_fraction=0.1,
    test_fraction=0.1,
    seed=1234,
    skip_prep=False,
    num_workers=8,
):
    """Write train / valid / test manifests for keyword spotting.

    Arguments
    ---------
    data_folder : str
        Speech Commands v0.01 folder or built-in corpus root.
    save_folder : str
        Where the csv files (and generated silence clips) go.
    test_folder : str, optional
        ``speech_commands_test_set_v0.01`` folder (Speech Commands only).
    data_format : str
        ``auto``, ``speech_commands`` or ``builtin``.
    silence_fraction : float
        Speech Commands: ``_silence_`` clips added to each split, as a share
        of the split's word clips.
    valid_fraction, test_fraction : float
        Built-in corpus: shares of the keywords used for valid and test.
    seed : int
        Seed of the silence crops.
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
    >>> prepare_speech_commands("/no/such/folder", tempfile.mkdtemp())
    Traceback (most recent call last):
    ...
    FileNotFoundError: /no/such/folder is neither Speech Commands ...
    """
    if skip_prep:
        return {}
    if data_format == "auto":
        data_format = detect_format(data_folder)
    options = dict(
        data_folder=str(Path(data_folder).resolve()),
        test_folder=str(Path(test_folder).resolve()) if test_folder else None,
        data_format=data_format,
        silence_fraction=silence_fraction,
        valid_fraction=valid_fraction,
        test_fraction=test_fraction,
        seed=seed,
        # The file lists (names, sizes, times): added or deleted files prepare again.
        data_files=folder_fingerprint(data_folder),
        test_files=folder_fingerprint(test_folder) if test_folder else None,
    )
    files = [f"{split}.csv" for split in SPLITS]
    if already_prepared(save_folder, options, files):
        logger.info("Keyword manifests in %s are up to date.", save_folder)
        return {}
    if data_format == "speech_commands":
        rows = _speech_commands_rows(
            Path(data_folder),
            test_folder,
            save_folder,
            silence_fraction,
            seed,
            num_workers,
        )
    elif data_format == "builtin":
        rows = _builtin_rows(data_folder, save_folder, valid_fraction, test_fraction)
    elif data_format == "manifests":
        rows = labelled_manifest_rows(data_folder, HEADER, "label", num_workers)
    else:
        raise ValueError(
            f"Unknown data_format '{data_format}'; "
            "use auto, manifests, speech_commands or builtin."
        )
    counts = {}
    for split in SPLITS:
        counts[split] = write_manifest(
            Path(save_folder) / f"{split}.csv", HEADER, rows[split]
        )
        logger.info("%s: %d utterances", split, counts[split])
    mark_prepared(save_folder, options)
    return counts


def _with_durations(items, num_workers=8):
    """(ID, wav, spk_id, label) -> manifest rows; unusable files are left out."""
    durations = audio_durations([item[1] for item in items], num_workers)
    return [
        [utt, f"{duration:.4f}", wav, spk, label]
        for (utt, wav, spk, label), (duration, _) in zip(items, durations)
        if duration is not None
    ]


def _speech_commands_rows(
    folder, test_folder, save_folder, silence_fraction, seed, num_workers
):
    def read_list(name):
        return set((folder / name).read_text().split())

    valid_list = read_list("validation_list.txt")
    test_list = read_list("testing_list.txt")
    items = {split: [] for split in SPLITS}
    for wav in sorted(folder.glob("*/*.wav")):
        word = wav.parent.name
        if word == BACKGROUND:
            continue
        relative = f"{word}/{wav.name}"
        split = "valid" if relative in valid_list else "train"
        if relative in test_list:
            split = "test"
        speaker = wav.name.split("_nohash_")[0]
        utt = f"{word}--{wav.stem}"
        items[split].append((utt, str(wav.resolve()), speaker, keyword_label(word)))
    if test_folder:
        items["test"] = _folder_items(Path(test_folder))
    rows = {
        split: _with_durations(found, num_workers) for split, found in items.items()
    }
    noise = _background_noise(folder / BACKGROUND)
    rng = random.Random(seed)
    for split in SPLITS:
        if split == "test" and test_folder:
            continue  # the separate test release has its own _silence_ clips
        count = round(silence_fraction * len(rows[split]))
        rows[split].extend(
            _silence_rows(noise, count, Path(save_folder) / "silence" / split, rng)
        )
    return rows


def _folder_items(test_folder):
    items = []
    for wav in sorted(test_folder.glob("*/*.wav")):
        label = keyword_label(wav.parent.name)
        speaker = wav.name.split("_nohash_")[0]
        items.append(
            (f"test--{wav.parent.name}--{wav.stem}", str(wav.resolve()), speaker, label)
        )
    return items


def _background_noise(folder):
    noise = []
    for wav in sorted(folder.glob("*.wav")):
        try:
            noise.append(read_audio(str(wav)))
        except BadAudioError as err:
            logger.warning("Background noise %s unusable: %s", wav, err.reason)
    if not noise:
        raise DataLayoutError(f"No usable background-noise wav files in {folder}.")
    return noise


def _silence_rows(noise, count, folder, rng):
    """Write ``count`` 1-second crops of random background recordings."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for index in range(count):
        recording = noise[rng.randrange(len(noise))]
        start = rng.randrange(max(1, recording.numel() - SAMPLE_RATE + 1))
        clip = recording[start : start + SAMPLE_RATE].numpy()
        path = folder / f"silence_{index:05d}.wav"
        sf.write(str(path), clip, SAMPLE_RATE, subtype="PCM_16")
        duration = len(clip) / SAMPLE_RATE
        rows.append(
            [
                f"{SILENCE}--{folder.name}-{index:05d}",
                f"{duration:.4f}",
                str(path.resolve()),
                "none",
                SILENCE,
            ]
        )
    return rows


def _builtin_rows(data_folder, save_folder, valid_fraction, test_fraction):
    corpus_save = Path(save_folder) / "builtin_manifests"
    prepare_librispeech(data_folder, corpus_save, te_splits=["keywords"])
    entries = read_manifest(corpus_save / "keywords.csv")
    split_of = hash_split([e["ID"] for e in entries], valid_fraction, test_fraction)
    rows = {split: [] for split in SPLITS}
    for entry in entries:
        rows[split_of[entry["ID"]]].append(
            [
                entry["ID"],
                entry["duration"],
                entry["wav"],
                entry["spk_id"],
                keyword_label(entry["wrd"]),
            ]
        )
    return rows


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Keyword-spotting csv manifests")
    parser.add_argument("--data_folder", required=True)
    parser.add_argument("--save_folder", required=True)
    parser.add_argument("--test_folder", default=None)
    parser.add_argument("--data_format", default="auto")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    print(prepare_speech_commands(**vars(args)))
