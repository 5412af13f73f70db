"""Intent-classification analog in the Fluent Speech Commands layout.

Templated spoken commands, each labelled with the (action, object, location)
triple of Fluent Speech Commands, split by speaker as that dataset is::

    <output>/data/{train,valid,test}_data.csv
        (columns: index, path, speakerId, transcription, action, object, location)
    <output>/wavs/speakers/<speaker>/<utterance>.wav

It tells whether the upstream carries the words of a short command to an
utterance-level head; it cannot tell real-speech robustness (TTS voices, no
noise, far fewer phrasings than the real 97 speakers).
"""

import csv
import random
from pathlib import Path

from speechbrain_skill.data.analogs.common import (
    analog_voices,
    mark_built,
    reusable,
    synthesize_jobs,
)

LOCATIONS = {
    "kitchen": "in the kitchen",
    "bedroom": "in the bedroom",
    "washroom": "in the washroom",
}
# (action, object, takes a location) -> phrasings; "{loc}" is the location phrase.
INTENTS = {
    ("activate", "lights", True): [
        "turn on the lights {loc}",
        "switch on the lights {loc}",
    ],
    ("deactivate", "lights", True): [
        "turn off the lights {loc}",
        "switch off the lights {loc}",
    ],
    ("increase", "heat", True): ["turn up the heat {loc}", "make it warmer {loc}"],
    ("decrease", "heat", True): ["turn down the heat {loc}", "make it cooler {loc}"],
    ("increase", "volume", False): ["turn up the volume", "louder please"],
    ("decrease", "volume", False): ["turn down the volume", "quieter please"],
    ("activate", "music", False): ["play the music", "start the music"],
    ("deactivate", "music", False): ["stop the music", "pause the music"],
    ("bring", "newspaper", False): ["bring me the newspaper", "get the newspaper"],
    ("bring", "juice", False): ["bring me some juice", "get me the juice"],
    ("change language", "German", False): [
        "switch the language to german",
        "use german",
    ],
    ("change language", "English", False): [
        "switch the language to english",
        "use english",
    ],
}
SPLIT_SPEAKERS = {"train": 6, "valid": 2, "test": 2}
COLUMNS = ["", "path", "speakerId", "transcription", "action", "object", "location"]


def plan_commands(count, rng):
    """``count`` (transcription, action, object, location) commands.

    Example
    -------
    >>> plan_commands(2, random.Random(0))[0][1:]
    ('deactivate', 'lights', 'kitchen')
    """
    keys = sorted(INTENTS)
    commands = []
    for _ in range(count):
        action, obj, located = keys[rng.randrange(len(keys))]
        location = rng.choice(sorted(LOCATIONS)) if located else "none"
        phrase = rng.choice(INTENTS[(action, obj, located)])
        text = phrase.format(loc=LOCATIONS.get(location, "")).strip()
        commands.append((text, action, obj, location))
    return commands


def build_ic_analog(output, seed=0, workers=2, utterances_per_speaker=16):
    """Write the analog (skipped when one with the same settings exists).

    Arguments
    ---------
    output : str or os.PathLike
        Dataset root (``--data_folder`` of the IC recipe).
    seed : int
        Same seed, same dataset.
    workers : int
        Parallel TTS processes.
    utterances_per_speaker : int
        Commands per speaker.

    Returns
    -------
    pathlib.Path
    """
    output = Path(output)
    settings = dict(
        seed=seed, splits=SPLIT_SPEAKERS, per_speaker=utterances_per_speaker
    )
    if reusable(output, settings):
        return output
    voices = analog_voices(sum(SPLIT_SPEAKERS.values()), seed)
    rng = random.Random(seed)
    jobs, tables, index = [], {}, 0
    for split, count in SPLIT_SPEAKERS.items():
        rows = []
        for _ in range(count):
            voice = voices[index]
            speaker = f"spk{index:02d}"
            for utt, (text, action, obj, location) in enumerate(
                plan_commands(utterances_per_speaker, rng)
            ):
                relative = f"wavs/speakers/{speaker}/{speaker}-{utt:03d}.wav"
                jobs.append((output / relative, text, voice, f"{seed}-{speaker}-{utt}"))
                rows.append([len(rows), relative, speaker, text, action, obj, location])
            index += 1
        tables[split] = rows
    seconds = synthesize_jobs(jobs, workers)
    (output / "data").mkdir(parents=True, exist_ok=True)
    for split, rows in tables.items():
        with open(output / "data" / f"{split}_data.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(COLUMNS)
            writer.writerows(rows)
    mark_built(output, settings, utterances=len(jobs), seconds=round(seconds, 1))
    return output
