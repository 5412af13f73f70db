"""Built-in diarization analog: overlapped two-voice mixtures with RTTMs.

Each mixture holds one sentence of each of two TTS voices; the second starts
part-way through the first, so the two overlap. The reference segments are
the spoken extents of the two (leading and trailing TTS silence trimmed); a
quarter second of silence opens and closes each mixture.
Written in the Kaldi-style layout SUPERB's SD recipe uses for Libri2Mix::

    <root>/<split>/wavs/<recording>.wav
    <root>/<split>/wav.scp     # <recording> <path>
    <root>/<split>/rttm        # SPEAKER <rec> 1 <start> <dur> <NA> <NA> <spk> <NA> <NA>

for the splits ``train``, ``dev`` and ``test``. It checks the pipeline; two
TTS voices with a single overlap are far easier than real conversations.
"""

import random
from pathlib import Path

import numpy as np

from speechbrain_skill.data.analogs.clips import (
    SAMPLE_RATE,
    finished_build,
    mark_built,
    seeded_gain,
    synthesize_all,
    write_wav,
)
from speechbrain_skill.data.sentences import make_sentences
from speechbrain_skill.data.synthetic_corpus import make_voices
from speechbrain_skill.data.tts import require_engines

SPLITS = ("train", "dev", "test")
SILENCE_LEVEL = 0.02  # of the clip's peak
LEAD_SAMPLES = SAMPLE_RATE // 4  # silence before and after each mixture


def spoken_extent(audio, level=SILENCE_LEVEL):
    """First and last sample above ``level`` x peak (end exclusive).

    Example
    -------
    >>> spoken_extent(np.array([0.0, 0.001, 0.5, -1.0, 0.3, 0.0]))
    (2, 5)
    """
    loud = np.flatnonzero(np.abs(audio) > level * np.max(np.abs(audio)))
    return int(loud[0]), int(loud[-1]) + 1


def mix_two(first, second, offset):
    """``second`` added to ``first`` from sample ``offset`` on (zero-padded).

    Example
    -------
    >>> mix_two(np.ones(3), np.ones(3), 2).tolist()
    [1.0, 1.0, 2.0, 1.0, 1.0]
    """
    length = max(len(first), offset + len(second))
    mixture = np.zeros(length, dtype=np.float32)
    mixture[: len(first)] += first
    mixture[offset : offset + len(second)] += second
    return mixture


def build_sd_analog(
    output_folder,
    seed=0,
    num_speakers=6,
    mixtures_per_split=(12, 4, 4),
    workers=2,
):
    """Write the mixtures, ``wav.scp`` and ``rttm`` of train / dev / test.

    Arguments
    ---------
    output_folder : str or os.PathLike
        The analog root.
    seed : int
        Voices, sentences, pairs, offsets and levels: the same seed gives the
        same files.
    num_speakers : int
        TTS voices the pairs are drawn from.
    mixtures_per_split : tuple of int
        Mixtures in train, dev, test.
    workers : int
        Parallel TTS processes.

    Returns
    -------
    str
        ``output_folder``.
    """
    engines = require_engines()
    settings = dict(
        task="sd",
        seed=seed,
        num_speakers=num_speakers,
        mixtures_per_split=list(mixtures_per_split),
        engines=engines,
    )
    if finished_build(output_folder, settings):
        return str(output_folder)
    voices = make_voices(num_speakers, engines, seed)
    rng = random.Random(seed)
    sentences = iter(make_sentences(2 * sum(mixtures_per_split), seed))
    plan = []
    for split, count in zip(SPLITS, mixtures_per_split):
        for index in range(count):
            pair = rng.sample(range(num_speakers), 2)
            recording = f"{split}_mix{index:03d}"
            jobs = [
                (next(sentences), voices[spk], seeded_gain(seed, recording, spk))
                for spk in pair
            ]
            plan.append((split, recording, pair, rng.uniform(0.3, 0.7), jobs))
    clips = iter(synthesize_all([job for item in plan for job in item[-1]], workers))
    root = Path(output_folder)
    scp = {split: [] for split in SPLITS}
    rttm = {split: [] for split in SPLITS}
    for split, recording, pair, fraction, _ in plan:
        first, second = next(clips), next(clips)
        start_a, end_a = spoken_extent(first)
        start_b, end_b = spoken_extent(second)
        first, second = first[start_a:end_a], second[start_b:end_b]
        offset = int(fraction * len(first))
        path = root / split / "wavs" / f"{recording}.wav"
        silence = np.zeros(LEAD_SAMPLES, dtype=np.float32)
        write_wav(
            path, np.concatenate([silence, mix_two(first, second, offset), silence])
        )
        scp[split].append(f"{recording} {path.resolve()}\n")
        for spk, start, length in (
            (pair[0], LEAD_SAMPLES, len(first)),
            (pair[1], LEAD_SAMPLES + offset, len(second)),
        ):
            rttm[split].append(
                f"SPEAKER {recording} 1 {start / SAMPLE_RATE:.4f} "
                f"{length / SAMPLE_RATE:.4f} <NA> <NA> spk{spk} <NA> <NA>\n"
            )
    for split in SPLITS:
        (root / split).mkdir(parents=True, exist_ok=True)
        (root / split / "wav.scp").write_text("".join(scp[split]))
        (root / split / "rttm").write_text("".join(rttm[split]))
    mark_built(root, settings, mixtures=len(plan))
    return str(root)
