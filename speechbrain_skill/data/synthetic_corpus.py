"""Build the built-in speech corpus: TTS voices written in the LibriSpeech layout.

Every voice setting (engine, voice, pitch, speed) is one speaker. Each split
gets its own chapter per speaker and its own sentences, so the LibriSpeech
preparation code runs unchanged on the result::

    <output>/<split>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac
    <output>/<split>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt

Unlike LibriSpeech, the same speakers appear in every split (with different
sentences), which lets the speaker-identification recipe use the corpus.
The optional ``keywords`` split holds single command words (yes, no, ...).

Command line::

    python -m speechbrain_skill.data.synthetic_corpus --output data/builtin
"""

import argparse
import json
import logging
import random
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import soundfile as sf

from speechbrain_skill.data.sentences import KEYWORDS, make_sentences
from speechbrain_skill.data.tts import (
    ESPEAK_VOICES,
    FLITE_VOICES,
    VoiceSetting,
    require_engines,
    synthesize,
)

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000
FIRST_SPEAKER_ID = 1001
FLITE_BASE_F0 = {"slt": 170, "awb": 110, "rms": 105, "kal16": 115}
INFO_FILE = "corpus_info.json"


def make_voices(num_speakers, engines, seed=0):
    """Choose ``num_speakers`` distinct voice settings, alternating engines.

    Arguments
    ---------
    num_speakers : int
        Number of speakers.
    engines : list of str
        Installed engines (``flite``, ``espeak-ng``).
    seed : int
        Seed for pitch and speed.

    Returns
    -------
    list of VoiceSetting

    Example
    -------
    >>> voices = make_voices(3, ["flite", "espeak-ng"], seed=0)
    >>> [v.engine for v in voices]
    ['flite', 'espeak-ng', 'flite']
    """
    rng = random.Random(seed)
    pools = {"flite": list(FLITE_VOICES), "espeak-ng": list(ESPEAK_VOICES)}
    voices = []
    for index in range(num_speakers):
        engine = engines[index % len(engines)]
        pool = pools[engine]
        voice = pool[(index // len(engines)) % len(pool)]
        speed = round(rng.uniform(0.85, 1.2), 2)
        if engine == "flite":
            pitch = int(FLITE_BASE_F0[voice] * rng.uniform(0.85, 1.2))
        else:
            pitch = rng.randint(25, 75)
        voices.append(VoiceSetting(engine, voice, pitch, speed))
    return voices


def plan_corpus(
    num_speakers, utterances_per_split, keywords_per_speaker, seed, engines
):
    """List the utterances to synthesise: (split, speaker, chapter, index, text, voice).

    Arguments
    ---------
    num_speakers : int
        Number of voices.
    utterances_per_split : dict
        Split name -> sentences per speaker.
    keywords_per_speaker : int
        Single-word utterances per speaker in the ``keywords`` split.
    seed : int
        Seed for texts and voices.
    engines : list of str
        Installed engines.

    Returns
    -------
    voices : list of VoiceSetting
    items : list of tuple

    Example
    -------
    >>> voices, items = plan_corpus(2, {"dev-clean": 2}, 1, 0, ["flite"])
    >>> len(items), items[0][:4]
    (6, ('dev-clean', 1001, 100100, 0))
    """
    voices = make_voices(num_speakers, engines, seed)
    total = num_speakers * sum(utterances_per_split.values())
    sentences = iter(make_sentences(total, seed))
    rng = random.Random(seed + 1)
    items = []
    for split_index, (split, count) in enumerate(utterances_per_split.items()):
        for spk_index, voice in enumerate(voices):
            speaker = FIRST_SPEAKER_ID + spk_index
            chapter = speaker * 100 + split_index
            for utt in range(count):
                items.append((split, speaker, chapter, utt, next(sentences), voice))
    if keywords_per_speaker:
        split_index = len(utterances_per_split)
        for spk_index, voice in enumerate(voices):
            speaker = FIRST_SPEAKER_ID + spk_index
            chapter = speaker * 100 + split_index
            for utt in range(keywords_per_speaker):
                word = KEYWORDS[rng.randrange(len(KEYWORDS))].upper()
                items.append(("keywords", speaker, chapter, utt, word, voice))
    return voices, items


def speak(text, voice, gain_key):
    """Synthesise ``text`` at 16 kHz with a seeded level (peak 0.3 to 0.9).

    Arguments
    ---------
    text : str
        What is said.
    voice : VoiceSetting
        Who says it.
    gain_key : str
        Seed of the level: the same key always gives the same level.

    Returns
    -------
    numpy.ndarray
    """
    audio = synthesize(text.lower(), voice, SAMPLE_RATE)
    # A seeded gain per utterance gives level variety, as in real recordings.
    gain = random.Random(gain_key).uniform(0.3, 0.9)
    peak = float(np.max(np.abs(audio))) or 1.0
    return audio / peak * gain


def _write_utterance(output, item, seed):
    split, speaker, chapter, utt, text, voice = item
    folder = Path(output) / split / str(speaker) / str(chapter)
    folder.mkdir(parents=True, exist_ok=True)
    audio = speak(text, voice, f"{seed}-{speaker}-{chapter}-{utt}")
    name = f"{speaker}-{chapter}-{utt:04d}"
    sf.write(str(folder / f"{name}.flac"), audio, SAMPLE_RATE, subtype="PCM_16")
    return split, speaker, chapter, name, text, len(audio) / SAMPLE_RATE


def generate_corpus(
    output,
    num_speakers=8,
    train_utterances=12,
    dev_utterances=3,
    test_utterances=3,
    keywords_per_speaker=0,
    seed=0,
    workers=2,
    overwrite=False,
):
    """Generate the built-in corpus in LibriSpeech layout (skipped when it exists).

    Arguments
    ---------
    output : str or os.PathLike
        Corpus root (plays the role of the LibriSpeech folder).
    num_speakers : int
        Number of voice settings.
    train_utterances, dev_utterances, test_utterances : int
        Sentences per speaker in train-clean-100, dev-clean, test-clean.
    keywords_per_speaker : int
        Single command words per speaker in the ``keywords`` split (0: none).
    seed : int
        Seed: the same arguments always give the same corpus.
    workers : int
        Parallel TTS processes.
    overwrite : bool
        Regenerate even if a corpus with the same settings exists.

    Returns
    -------
    dict
        The corpus description written to ``corpus_info.json``, plus
        ``reused: True`` when an identical corpus was already there.
    """
    engines = require_engines()
    splits = {
        "train-clean-100": train_utterances,
        "dev-clean": dev_utterances,
        "test-clean": test_utterances,
    }
    splits = {name: count for name, count in splits.items() if count > 0}
    settings = dict(
        num_speakers=num_speakers,
        splits=splits,
        keywords_per_speaker=keywords_per_speaker,
        seed=seed,
        engines=engines,
    )
    output = Path(output)
    info_path = output / INFO_FILE
    if info_path.is_file() and not overwrite:
        info = json.loads(info_path.read_text())
        if info.get("settings") == settings:
            logger.info("Built-in corpus already in %s; skipping.", output)
            return dict(info, reused=True)
    start = time.time()
    voices, items = plan_corpus(
        num_speakers, splits, keywords_per_speaker, seed, engines
    )
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        written = list(
            pool.map(lambda item: _write_utterance(output, item, seed), items)
        )
    transcripts = {}
    total_seconds = 0.0
    for split, speaker, chapter, name, text, seconds in written:
        transcripts.setdefault((split, speaker, chapter), []).append((name, text))
        total_seconds += seconds
    for (split, speaker, chapter), lines in transcripts.items():
        path = (
            output
            / split
            / str(speaker)
            / str(chapter)
            / f"{speaker}-{chapter}.trans.txt"
        )
        path.write_text("".join(f"{name} {text}\n" for name, text in sorted(lines)))
    speakers = {
        FIRST_SPEAKER_ID + index: voice.describe() for index, voice in enumerate(voices)
    }
    (output / "SPEAKERS.TXT").write_text(
        "".join(f"{spk} | {desc}\n" for spk, desc in speakers.items())
    )
    info = dict(
        settings=settings,
        speakers=speakers,
        num_utterances=len(written),
        hours=round(total_seconds / 3600, 4),
        seconds_to_build=round(time.time() - start, 1),
    )
    info_path.write_text(json.dumps(info, indent=2))
    return info


def main(argv=None):
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", required=True, help="corpus root folder")
    parser.add_argument("--num_speakers", type=int, default=8)
    parser.add_argument("--train_utterances", type=int, default=12)
    parser.add_argument("--dev_utterances", type=int, default=3)
    parser.add_argument("--test_utterances", type=int, default=3)
    parser.add_argument("--keywords_per_speaker", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    info = generate_corpus(**vars(args))
    # A reused corpus reports what it holds, not the build time of an earlier run.
    made = "reused" if info.get("reused") else f"built in {info['seconds_to_build']} s"
    print(
        f"Built-in corpus in {args.output}: {info['num_utterances']} utterances, "
        f"{len(info['speakers'])} speakers, {info['hours'] * 60:.1f} min of audio, "
        f"{made}."
    )


if __name__ == "__main__":
    main()
