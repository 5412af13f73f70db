"""Thin wrappers around the Debian TTS engines flite and espeak-ng."""

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from math import gcd
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

FLITE_VOICES = ("slt", "awb", "rms", "kal16")
ESPEAK_VOICES = (
    "en-us+m1",
    "en-us+f2",
    "en-gb+m3",
    "en-gb+f4",
    "en-gb-scotland+m4",
    "en-us+f5",
    "en-029+m2",
    "en-gb-x-rp+f3",
    "en-us+m7",
    "en-gb+f1",
)


class TTSUnavailableError(RuntimeError):
    """Raised when no TTS engine is installed."""


@dataclass(frozen=True)
class VoiceSetting:
    """One synthetic speaker: an engine, a voice and prosody settings.

    Arguments
    ---------
    engine : str
        ``flite`` or ``espeak-ng``.
    voice : str
        Engine voice name.
    pitch : int
        espeak-ng pitch (0-99) or flite mean F0 in Hz.
    speed : float
        Speaking-rate factor (1.0 = engine default).
    """

    engine: str
    voice: str
    pitch: int
    speed: float

    def describe(self):
        """Short human-readable description, e.g. ``flite:slt pitch=120 speed=1.10``."""
        return f"{self.engine}:{self.voice} pitch={self.pitch} speed={self.speed:.2f}"


def available_engines():
    """List the installed engines among ``flite`` and ``espeak-ng``.

    Returns
    -------
    list of str

    Example
    -------
    >>> set(available_engines()) <= {"flite", "espeak-ng"}
    True
    """
    return [name for name in ("flite", "espeak-ng") if shutil.which(name)]


def require_engines():
    """Return the installed engines or raise a clear error naming the packages."""
    engines = available_engines()
    if not engines:
        raise TTSUnavailableError(
            "No TTS engine found: the built-in corpus needs the Debian packages "
            "'flite' and/or 'espeak-ng' (apt-get install flite espeak-ng, or run "
            "scripts/install_system_deps.sh)."
        )
    return engines


def synthesize(text, voice, sample_rate=16000):
    """Speak ``text`` with ``voice`` and return mono float32 audio at ``sample_rate``.

    Arguments
    ---------
    text : str
        Text to speak.
    voice : VoiceSetting
        Who speaks.
    sample_rate : int
        Output rate; the engine output is resampled when it differs.

    Returns
    -------
    numpy.ndarray
    """
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "utt.wav"
        if voice.engine == "flite":
            cmd = [
                "flite",
                "-voice",
                voice.voice,
                "--setf",
                f"duration_stretch={1.0 / voice.speed:.3f}",
                "--setf",
                f"int_f0_target_mean={voice.pitch}",
                "-t",
                text,
                "-o",
                str(out),
            ]
        elif voice.engine == "espeak-ng":
            words_per_minute = int(round(160 * voice.speed))
            cmd = [
                "espeak-ng",
                "-v",
                voice.voice,
                "-p",
                str(voice.pitch),
                "-s",
                str(words_per_minute),
                "-w",
                str(out),
                text,
            ]
        else:
            raise ValueError(f"Unknown TTS engine '{voice.engine}'.")
        subprocess.run(cmd, check=True, capture_output=True)
        audio, rate = sf.read(str(out), dtype="float32", always_2d=True)
    audio = audio.mean(axis=1)
    if rate != sample_rate:
        div = gcd(rate, sample_rate)
        audio = resample_poly(audio, sample_rate // div, rate // div).astype(np.float32)
    return audio
