"""Slot-filling analog in the Audio SNIPS layout (as SUPERB's SF reads it).

Templated SNIPS-like requests with word-level slot labels, spoken by TTS
voices named after the Audio SNIPS speakers and split by voice with SUPERB's
lists (``recipes/SNIPS/SF``)::

    <output>/all.iob.snips.txt   <uid> BOS w1 .. wn EOS<TAB>O l1 .. ln <intent>
    <output>/slots.txt           'O', then one slot type per line
    <output>/{train,valid,test}/<uid>.wav     (uid starts with the speaker)

The word labels are ``O`` or the slot type of the word. It tells whether an
upstream lets a CTC head spell the request and mark its slots; with a few
templates and TTS voices it cannot stand in for real SNIPS numbers (Audio
SNIPS itself is TTS, but with far more varied text).
"""

import random
from pathlib import Path

from speechbrain_skill.data.analogs.common import (
    analog_voices,
    mark_built,
    reusable,
    synthesize_jobs,
)

VALUES = {
    "artist": ["queen", "the beatles", "adele", "bob marley"],
    "service": ["spotify", "deezer", "youtube"],
    "genre": ["jazz", "rock", "classical"],
    "city": ["paris", "london", "new york", "boston"],
    "timeRange": ["tomorrow", "tonight", "next week"],
    "playlist": ["workout", "road trip", "sleep"],
    "party_size_number": ["two", "four", "six"],
    "restaurant_type": ["pizzeria", "steakhouse", "diner"],
    "rating_value": ["three", "four", "five"],
}
# (intent, template): {slot} marks a slot value.
TEMPLATES = [
    ("PlayMusic", "play {artist} on {service}"),
    ("PlayMusic", "play some {genre} music"),
    ("GetWeather", "what is the weather in {city} {timeRange}"),
    ("GetWeather", "will it rain in {city} {timeRange}"),
    ("AddToPlaylist", "add {artist} to my {playlist} playlist"),
    ("BookRestaurant", "book a table for {party_size_number} at a {restaurant_type}"),
    ("RateBook", "rate this book {rating_value} stars"),
]
# Voices named after SUPERB's split lists (snips.yaml): train, valid, test.
SPLIT_VOICES = {
    "train": ["Ivy", "Joanna", "Joey", "Justin", "Kendra", "Kimberly"],
    "valid": ["Aditi", "Amy"],
    "test": ["Brian", "Emma"],
}


def plan_request(rng):
    """One request: (words, word labels, intent).

    Example
    -------
    >>> words, labels, intent = plan_request(random.Random(1))
    >>> len(words) == len(labels), intent in {t[0] for t in TEMPLATES}
    (True, True)
    """
    intent, template = TEMPLATES[rng.randrange(len(TEMPLATES))]
    words, labels = [], []
    for part in template.split():
        if part.startswith("{"):
            slot = part.strip("{}")
            value = rng.choice(VALUES[slot]).split()
            words += value
            labels += [slot] * len(value)
        else:
            words.append(part)
            labels.append("O")
    return words, labels, intent


def build_sf_analog(output, seed=0, workers=2, utterances_per_speaker=16):
    """Write the analog (skipped when one with the same settings exists).

    Arguments
    ---------
    output : str or os.PathLike
        Dataset root (``--data_folder`` of the SF recipe).
    seed : int
        Same seed, same dataset.
    workers : int
        Parallel TTS processes.
    utterances_per_speaker : int
        Requests per voice.

    Returns
    -------
    pathlib.Path
    """
    output = Path(output)
    settings = dict(seed=seed, voices=SPLIT_VOICES, per_speaker=utterances_per_speaker)
    if reusable(output, settings):
        return output
    names = [name for voices in SPLIT_VOICES.values() for name in voices]
    voices = dict(zip(names, analog_voices(len(names), seed)))
    rng = random.Random(seed)
    jobs, lines = [], []
    for split, speakers in SPLIT_VOICES.items():
        for speaker in speakers:
            for index in range(utterances_per_speaker):
                words, labels, intent = plan_request(rng)
                uid = f"{speaker}-snips-{split}-{index:04d}"
                text = " ".join(words)
                jobs.append((output / split / f"{uid}.wav", text, voices[speaker], uid))
                lines.append(f"{uid} BOS {text} EOS\tO {' '.join(labels)} {intent}\n")
    seconds = synthesize_jobs(jobs, workers)
    (output / "all.iob.snips.txt").write_text("".join(lines))
    (output / "slots.txt").write_text("O\n" + "\n".join(sorted(VALUES)) + "\n")
    mark_built(output, settings, utterances=len(jobs), seconds=round(seconds, 1))
    return output
