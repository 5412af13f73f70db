"""What the analog builders share: voices, synthesis jobs, reuse by settings."""

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import soundfile as sf

from speechbrain_skill.data.synthetic_corpus import SAMPLE_RATE, make_voices, speak
from speechbrain_skill.data.tts import require_engines

logger = logging.getLogger(__name__)
INFO_FILE = "analog_info.json"


def analog_voices(num_speakers, seed):
    """Voice settings of an analog (both engines when installed).

    Example
    -------
    >>> len(analog_voices(3, seed=0))
    3
    """
    return make_voices(num_speakers, require_engines(), seed)


def reusable(output, settings):
    """Whether ``output`` already holds an analog built with ``settings``."""
    info = Path(output) / INFO_FILE
    return info.is_file() and json.loads(info.read_text()).get("settings") == settings


def mark_built(output, settings, **facts):
    """Record the settings (and facts such as counts) of a finished analog."""
    Path(output).mkdir(parents=True, exist_ok=True)
    document = dict(settings=settings, **facts)
    (Path(output) / INFO_FILE).write_text(json.dumps(document, indent=2))


def synthesize_jobs(jobs, workers=2):
    """Write every ``(path, text, voice, gain_key)`` job as a 16 kHz wav.

    Returns
    -------
    float
        Total seconds of audio written.
    """

    def run(job):
        """Speak one job's text with its voice and write the file."""
        path, text, voice, key = job
        audio = speak(text, voice, key)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(path), audio, SAMPLE_RATE, subtype="PCM_16")
        return len(audio) / SAMPLE_RATE

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return sum(pool.map(run, jobs))
