"""What the task analogs share: seeded TTS clips and reuse of a finished build."""

import json
import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import soundfile as sf

from speechbrain_skill.data.tts import synthesize

SAMPLE_RATE = 16000
INFO_FILE = "analog_info.json"


def spoken_clip(text, voice, gain):
    """TTS audio of ``text`` by ``voice``, peak-normalised to ``gain``.

    Arguments
    ---------
    text : str
        What is said.
    voice : speechbrain_skill.data.tts.VoiceSetting
        Who says it.
    gain : float
        Peak amplitude of the clip.

    Returns
    -------
    numpy.ndarray
        float32, 16 kHz.
    """
    audio = synthesize(text.lower(), voice, SAMPLE_RATE)
    peak = float(np.max(np.abs(audio))) or 1.0
    return (audio / peak * gain).astype(np.float32)


def seeded_gain(seed, *key, low=0.3, high=0.9):
    """A gain drawn from a string key: the same clip always gets the same level.

    Example
    -------
    >>> seeded_gain(0, "a", 1) == seeded_gain(0, "a", 1) != seeded_gain(1, "a", 1)
    True
    """
    return random.Random("-".join(map(str, (seed, *key)))).uniform(low, high)


def synthesize_all(jobs, workers=2):
    """Run ``(text, voice, gain)`` jobs in parallel TTS processes, in order.

    Returns
    -------
    list of numpy.ndarray
    """
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return list(pool.map(lambda job: spoken_clip(*job), jobs))


def write_wav(path, audio):
    """Write 16 kHz PCM-16 wav, creating the folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), audio, SAMPLE_RATE, subtype="PCM_16")


def finished_build(output_folder, settings):
    """True when ``output_folder`` holds a build with exactly these settings.

    Example
    -------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> finished_build(folder, {"seed": 0})
    False
    >>> mark_built(folder, {"seed": 0}); finished_build(folder, {"seed": 0})
    True
    """
    path = Path(output_folder) / INFO_FILE
    if not path.is_file():
        return False
    return json.loads(path.read_text()).get("settings") == settings


def mark_built(output_folder, settings, **info):
    """Record a finished build (written last, so a crash leaves none)."""
    path = Path(output_folder) / INFO_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dict(settings=settings, **info), indent=2))
