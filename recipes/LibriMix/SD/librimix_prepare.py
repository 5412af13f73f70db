"""Libri2Mix diarization manifests (SUPERB SD data layout).

SUPERB's SD recipe reads Kaldi-style data folders made from Libri2Mix
(16 kHz, ``max`` mode) with reference RTTMs; ``--data_folder`` holds one per
split::

    <data_folder>/{train,dev,test}/wav.scp   # <recording> <wav path>
    <data_folder>/{train,dev,test}/rttm      # SPEAKER <recording> 1 <start> <dur> ...

Relative wav paths are taken from the split folder; piped commands
(``sox ... |``) are not supported (give the files). Recordings without RTTM
segments, or whose audio is unusable, are left out and counted in the log.

A built-in corpus root (``corpus_info.json``) as ``data_folder`` builds the
diarization analog (:func:`~speechbrain_skill.data.analogs.sd.build_sd_analog`)
in ``<save_folder>/builtin_analog`` and prepares that.

Output: ``<save_folder>/{train,dev,test}.csv`` with the columns ID, duration,
wav, segments (json list of [speaker, start, end] in seconds).
"""

import json
import logging
from pathlib import Path

from speechbrain_skill.data.manifests import (
    already_prepared,
    audio_durations,
    mark_prepared,
    write_manifest,
)
from speechbrain_skill.downstream.diarization import read_rttm
from speechbrain_skill.training.checks import DataLayoutError
from speechbrain_skill.training.stage_records import folder_fingerprint

logger = logging.getLogger(__name__)

HEADER = ["ID", "duration", "wav", "segments"]
SPLITS = ("train", "dev", "test")


def layout_problems(data_folder):
    """What a SUPERB SD data folder lacks (empty when the layout is right).

    Example
    -------
    >>> layout_problems("/no/such/folder")[:2]
    ['/no/such/folder/train/wav.scp (missing)', '/no/such/folder/train/rttm (missing)']
    """
    return [
        f"{Path(data_folder) / split / name} (missing)"
        for split in SPLITS
        for name in ("wav.scp", "rttm")
        if not (Path(data_folder) / split / name).is_file()
    ]


def read_wav_scp(path):
    r"""``<recording> <path>`` lines; relative paths start at the file's folder.

    Example
    -------
    >>> import tempfile, os
    >>> folder = tempfile.mkdtemp()
    >>> scp = os.path.join(folder, "wav.scp")
    >>> _ = open(scp, "w").write("r1 wavs/r1.wav\n")
    >>> read_wav_scp(scp)["r1"] == os.path.join(folder, "wavs/r1.wav")
    True
    """
    entries = {}
    folder = Path(path).parent
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        recording, _, location = line.strip().partition(" ")
        location = location.strip()
        if not location or location.endswith("|"):
            raise ValueError(
                f"{path}:{number}: expected '<recording> <wav file>' "
                "(piped commands are not supported)."
            )
        entries[recording] = str(folder / location)
    return entries


def prepare_librimix_sd(
    data_folder, save_folder, skip_prep=False, analog_seed=0, num_workers=8
):
    """Write the train / dev / test manifests.

    Arguments
    ---------
    data_folder : str
        SUPERB SD data folder, or a built-in corpus root (then the analog is built).
    save_folder : str
        Where the csv files go.
    skip_prep : bool
        Do nothing.
    analog_seed : int
        Seed of the built-in analog.
    num_workers : int
        Threads reading audio headers.

    Returns
    -------
    dict
        Split -> recordings (empty when skipped or already done).

    Example
    -------
    >>> import tempfile
    >>> prepare_librimix_sd("/no/such/folder", tempfile.mkdtemp())
    Traceback (most recent call last):
    ...
    FileNotFoundError: /no/such/folder is not a SUPERB SD data folder ...
    """
    if skip_prep:
        return {}
    data_folder = Path(data_folder)
    if (data_folder / "corpus_info.json").is_file():
        from speechbrain_skill.data.analogs.sd import build_sd_analog

        analog = Path(save_folder) / "builtin_analog"
        data_folder = Path(build_sd_analog(analog, seed=analog_seed))
    problems = layout_problems(data_folder)
    if problems:
        raise DataLayoutError(
            f"{data_folder} is not a SUPERB SD data folder (Libri2Mix in Kaldi "
            "style: <split>/wav.scp and <split>/rttm for train, dev, test; or a "
            f"built-in corpus root with corpus_info.json): {'; '.join(problems)}"
        )
    options = dict(
        data_folder=str(data_folder.resolve()),
        data_files=folder_fingerprint(data_folder),
    )
    files = [f"{split}.csv" for split in SPLITS]
    if already_prepared(save_folder, options, files):
        logger.info("Diarization manifests in %s are up to date.", save_folder)
        return {}
    counts = {}
    for split in SPLITS:
        wavs = read_wav_scp(data_folder / split / "wav.scp")
        segments = read_rttm(data_folder / split / "rttm")
        unlabelled = sorted(set(wavs) - set(segments))
        if unlabelled:
            logger.warning(
                "%s: %d recordings without RTTM segments left out (e.g. %s).",
                split,
                len(unlabelled),
                unlabelled[0],
            )
        names = sorted(set(wavs) & set(segments))
        durations = audio_durations([wavs[n] for n in names], num_workers)
        rows = [
            [name, f"{duration:.4f}", wavs[name], json.dumps(segments[name])]
            for name, (duration, _) in zip(names, durations)
            if duration is not None
        ]
        if not rows:
            raise DataLayoutError(
                f"{data_folder / split}: no recording with audio and RTTM segments."
            )
        counts[split] = write_manifest(Path(save_folder) / f"{split}.csv", HEADER, rows)
    logger.info("Diarization manifests: %s", counts)
    mark_prepared(save_folder, options)
    return counts


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Libri2Mix diarization manifests")
    parser.add_argument("--data_folder", required=True)
    parser.add_argument("--save_folder", required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    print(prepare_librimix_sd(**vars(args)))
