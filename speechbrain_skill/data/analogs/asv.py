"""Built-in speaker-verification analog in VoxCeleb1's layout.

TTS voices (:func:`~speechbrain_skill.data.synthetic_corpus.make_voices`) are
the speakers: the first ``num_train_speakers`` only train, the others are
the test speakers of a trial list over every pair of their utterances::

    <root>/wav/id2<nnnn>/<video>/<nnnnn>.wav
    <root>/veri_test2.txt          # <1|0> <enrol path> <test path>

It checks the pipeline (preparation, training, embedding, scoring). TTS
voices differ far more, and vary far less, than real speakers: its EER says
nothing about real verification.
"""

import itertools
from pathlib import Path

from speechbrain_skill.data.analogs.clips import (
    finished_build,
    mark_built,
    seeded_gain,
    synthesize_all,
    write_wav,
)
from speechbrain_skill.data.sentences import make_sentences
from speechbrain_skill.data.synthetic_corpus import make_voices
from speechbrain_skill.data.tts import require_engines

TRIAL_FILE = "veri_test2.txt"
FIRST_ID = 20001


def all_pair_trials(utterances):
    """Every unordered pair of utterances, labelled 1 when the speaker is the same.

    Arguments
    ---------
    utterances : list of (str, str)
        (relative path, speaker).

    Returns
    -------
    list of str
        ``"<label> <path> <path>"`` lines.

    Example
    -------
    >>> all_pair_trials([("a/1.wav", "a"), ("a/2.wav", "a"), ("b/1.wav", "b")])
    ['1 a/1.wav a/2.wav', '0 a/1.wav b/1.wav', '0 a/2.wav b/1.wav']
    """
    return [
        f"{int(spk_a == spk_b)} {a} {b}"
        for (a, spk_a), (b, spk_b) in itertools.combinations(utterances, 2)
    ]


def build_asv_analog(
    output_folder,
    seed=0,
    num_train_speakers=8,
    num_test_speakers=4,
    utterances_per_speaker=4,
    workers=2,
):
    """Write the VoxCeleb1-layout analog (reused when built with the same settings).

    Arguments
    ---------
    output_folder : str or os.PathLike
        The VoxCeleb1-like root.
    seed : int
        Voices, sentences and levels: the same seed gives the same files.
    num_train_speakers, num_test_speakers : int
        Disjoint speaker sets (test speakers appear only in the trial list).
    utterances_per_speaker : int
        Utterances per speaker (two "videos" per speaker).
    workers : int
        Parallel TTS processes.

    Returns
    -------
    str
        ``output_folder``.
    """
    engines = require_engines()
    settings = dict(
        task="asv",
        seed=seed,
        num_train_speakers=num_train_speakers,
        num_test_speakers=num_test_speakers,
        utterances_per_speaker=utterances_per_speaker,
        engines=engines,
    )
    if finished_build(output_folder, settings):
        return str(output_folder)
    total = num_train_speakers + num_test_speakers
    voices = make_voices(total, engines, seed)
    sentences = iter(make_sentences(total * utterances_per_speaker, seed))
    plan = []
    for index, voice in enumerate(voices):
        speaker = f"id{FIRST_ID + index}"
        for utt in range(utterances_per_speaker):
            relative = f"{speaker}/video{utt % 2}/{utt + 1:05d}.wav"
            gain = seeded_gain(seed, relative)
            plan.append((relative, speaker, index, (next(sentences), voice, gain)))
    clips = synthesize_all([item[-1] for item in plan], workers)
    root = Path(output_folder)
    for (relative, *_), audio in zip(plan, clips):
        write_wav(root / "wav" / relative, audio)
    test = [(rel, spk) for rel, spk, index, _ in plan if index >= num_train_speakers]
    (root / TRIAL_FILE).write_text("\n".join(all_pair_trials(test)) + "\n")
    mark_built(root, settings, utterances=len(plan))
    return str(root)
