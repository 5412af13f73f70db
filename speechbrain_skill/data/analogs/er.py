"""Built-in emotion-recognition analog in IEMOCAP's layout.

Five sessions, two voices each (``F`` and ``M``); every utterance is spoken
with one of five prosody styles named after IEMOCAP labels (``neu``, ``hap``,
``exc``, ``ang``, ``sad``): pitch, speaking rate and level change per style.
It checks the pipeline (IEMOCAP parsing, excitement merged into happiness,
five folds by session, training, fold averaging); prosody styles of a TTS
voice are **not** emotions, so the accuracy measures nothing about emotion::

    <root>/Session<k>/sentences/wav/Ses0<k>F_impro01/Ses0<k>F_impro01_F000.wav
    <root>/Session<k>/dialog/EmoEvaluation/Ses0<k>F_impro01.txt
"""

import dataclasses
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

# label -> (pitch factor, speed factor, peak level)
STYLES = {
    "neu": (1.0, 1.0, 0.5),
    "hap": (1.25, 1.15, 0.7),
    "exc": (1.3, 1.25, 0.8),
    "ang": (1.1, 1.35, 0.95),
    "sad": (0.8, 0.75, 0.25),
}
NUM_SESSIONS = 5


def styled_voice(voice, label):
    """The voice with the prosody of a style (espeak-ng pitch stays in 0-99).

    Example
    -------
    >>> from speechbrain_skill.data.tts import VoiceSetting
    >>> styled_voice(VoiceSetting("espeak-ng", "en-us+m1", 50, 1.0), "sad")
    VoiceSetting(engine='espeak-ng', voice='en-us+m1', pitch=40, speed=0.75)
    """
    pitch_factor, speed_factor, _ = STYLES[label]
    pitch = int(round(voice.pitch * pitch_factor))
    if voice.engine == "espeak-ng":
        pitch = min(max(pitch, 0), 99)
    return dataclasses.replace(
        voice, pitch=pitch, speed=round(voice.speed * speed_factor, 3)
    )


def build_er_analog(output_folder, seed=0, utterances_per_style=2, workers=2):
    """Write the IEMOCAP-layout analog (reused when built with the same settings).

    Arguments
    ---------
    output_folder : str or os.PathLike
        The IEMOCAP-like root.
    seed : int
        Voices, sentences and levels: the same seed gives the same files.
    utterances_per_style : int
        Utterances per (session, voice, style).
    workers : int
        Parallel TTS processes.

    Returns
    -------
    str
        ``output_folder``.
    """
    engines = require_engines()
    settings = dict(
        task="er", seed=seed, utterances_per_style=utterances_per_style, engines=engines
    )
    if finished_build(output_folder, settings):
        return str(output_folder)
    voices = make_voices(2 * NUM_SESSIONS, engines, seed)
    count = NUM_SESSIONS * 2 * len(STYLES) * utterances_per_style
    sentences = iter(make_sentences(count, seed))
    root = Path(output_folder)
    plan = []
    for session in range(1, NUM_SESSIONS + 1):
        dialog = f"Ses0{session}F_impro01"
        for gender, voice in zip("FM", voices[2 * session - 2 : 2 * session]):
            index = 0
            for label, (_, _, level) in STYLES.items():
                for _ in range(utterances_per_style):
                    utt = f"{dialog}_{gender}{index:03d}"
                    gain = level * seeded_gain(seed, utt, low=0.8, high=1.0)
                    job = (next(sentences), styled_voice(voice, label), gain)
                    plan.append((session, dialog, utt, label, job))
                    index += 1
    clips = synthesize_all([item[-1] for item in plan], workers)
    evaluations = {}
    for (session, dialog, utt, label, _), audio in zip(plan, clips):
        write_wav(root / f"Session{session}/sentences/wav/{dialog}/{utt}.wav", audio)
        start = 2.0 * len(evaluations.get((session, dialog), []))
        span = f"[{start:.4f} - {start + len(audio) / 16000:.4f}]"
        line = f"{span}\t{utt}\t{label}\t[2.5000, 2.5000, 2.5000]\n"
        evaluations.setdefault((session, dialog), []).append(line)
    for (session, dialog), lines in evaluations.items():
        path = root / f"Session{session}/dialog/EmoEvaluation/{dialog}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("% analog of IEMOCAP EmoEvaluation\n\n" + "\n".join(lines))
    mark_built(root, settings, utterances=len(plan))
    return str(root)
