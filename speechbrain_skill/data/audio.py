"""Robust audio reading: the bad-input rules of docs/design.md section 6.

Every problem with a file raises :class:`BadAudioError` with a short reason,
so callers can skip and count it; good files come back as 16 kHz mono float
tensors. Audio is read with soundfile (as SpeechBrain 1.1 does).
"""

import math
import os

import numpy as np
import soundfile as sf
import torch

SAMPLE_RATE = 16000
MIN_SAMPLES = 400  # one 25 ms window at 16 kHz: the conv front-end needs 400 samples


class BadAudioError(ValueError):
    """A file that cannot be used, with ``reason`` in a few words.

    Arguments
    ---------
    path : str
        The file.
    reason : str
        Short reason, e.g. ``missing``, ``unreadable``, ``too short``.
    """

    def __init__(self, path, reason):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


def reason_kind(reason):
    """The kind of a skip reason, without its details (what skip counts group by).

    Example
    -------
    >>> reason_kind("too short (3 samples at 16000 Hz)"), reason_kind("missing")
    ('too short', 'missing')
    """
    return str(reason).split(" (")[0]


def inspect_audio(path, min_samples=MIN_SAMPLES, sample_rate=SAMPLE_RATE):
    """Check a file's header and return its duration in seconds at its own rate.

    Used by data preparation so that missing, unreadable, empty and too-short
    files are left out of the manifests (counted) before training starts.

    Arguments
    ---------
    path : str
        Audio file.
    min_samples : int
        Shortest usable length, counted at ``sample_rate`` after resampling.
    sample_rate : int
        The rate the models use.

    Returns
    -------
    float
        Duration in seconds.

    Example
    -------
    >>> import tempfile, soundfile as sf, numpy as np
    >>> path = tempfile.mktemp(suffix=".flac")
    >>> sf.write(path, np.zeros(8000, dtype="float32"), 16000)
    >>> inspect_audio(path)
    0.5
    """
    if not os.path.isfile(path):
        raise BadAudioError(path, "missing")
    try:
        info = sf.info(path)
    except (RuntimeError, sf.LibsndfileError) as err:
        raise BadAudioError(path, f"unreadable ({err})") from err
    if info.frames <= 0:
        raise BadAudioError(path, "empty")
    if info.frames * sample_rate / info.samplerate < min_samples:
        raise BadAudioError(path, f"too short ({info.frames} samples)")
    return info.frames / info.samplerate


def read_audio(path, sample_rate=SAMPLE_RATE, min_samples=MIN_SAMPLES):
    """Read a file as a mono float32 tensor at ``sample_rate``.

    Stereo and multi-channel audio is averaged to mono; other rates are
    resampled (torchaudio's band-limited sinc resampler). Raises
    :class:`BadAudioError` for missing, unreadable, empty, too-short files and
    for files holding NaN or Inf samples.

    Arguments
    ---------
    path : str
        Audio file.
    sample_rate : int
        Target rate.
    min_samples : int
        Shortest usable length after resampling.

    Returns
    -------
    torch.Tensor
        Shape (samples,).

    Example
    -------
    >>> import tempfile, soundfile as sf, numpy as np
    >>> path = tempfile.mktemp(suffix=".wav")
    >>> sf.write(path, np.ones((8000, 2), dtype="float32") * 0.1, 8000)
    >>> read_audio(path).shape
    torch.Size([16000])
    """
    if not os.path.isfile(path):
        raise BadAudioError(path, "missing")
    try:
        data, rate = sf.read(path, dtype="float32", always_2d=True)
    except (RuntimeError, sf.LibsndfileError) as err:
        raise BadAudioError(path, f"unreadable ({err})") from err
    if data.size == 0:
        raise BadAudioError(path, "empty")
    if not np.isfinite(data).all():
        raise BadAudioError(path, "NaN or Inf samples")
    audio = torch.from_numpy(data.mean(axis=1))
    if rate != sample_rate:
        from torchaudio.functional import resample

        audio = resample(audio, rate, sample_rate)
    if audio.numel() < min_samples:
        raise BadAudioError(
            path, f"too short ({audio.numel()} samples at {sample_rate} Hz)"
        )
    return audio.contiguous()


def crop(audio, max_samples, generator=None, random_offset=True):
    """Crop a waveform to at most ``max_samples``, at a random offset when asked.

    Arguments
    ---------
    audio : torch.Tensor
        Shape (samples,).
    max_samples : int or None
        Longest allowed length; None keeps the audio whole.
    generator : torch.Generator, optional
        Source of the random offset.
    random_offset : bool
        Random offset (training) or the start (evaluation).

    Returns
    -------
    torch.Tensor

    Example
    -------
    >>> crop(torch.arange(10.0), 4, random_offset=False).tolist()
    [0.0, 1.0, 2.0, 3.0]
    """
    if max_samples is None or audio.numel() <= max_samples:
        return audio
    if not random_offset:
        return audio[:max_samples]
    start = int(
        torch.randint(audio.numel() - max_samples + 1, (1,), generator=generator)
    )
    return audio[start : start + max_samples]


def seconds_to_samples(seconds, sample_rate=SAMPLE_RATE):
    """Convert seconds to a whole number of samples (None stays None).

    Example
    -------
    >>> seconds_to_samples(1.5)
    24000
    """
    if seconds is None:
        return None
    return int(math.floor(seconds * sample_rate))
