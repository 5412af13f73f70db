"""Upstream inference speed: seconds of audio processed per second of compute."""

import time

import torch

SAMPLE_RATE = 16000


def _synchronize(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def measure_speed(upstream, seconds=4.0, repeats=5, batch_size=1, device="cpu", seed=0):
    """Time the forward pass of an upstream on random waveforms.

    Compute does not depend on the content of the audio, only on its length,
    so seeded noise stands in for speech. One warm-up pass is not timed; the
    speed comes from the fastest of ``repeats`` passes, the least disturbed
    by other jobs on a shared machine; the process CPU time per audio second
    is reported too (also of the least costly pass).

    Arguments
    ---------
    upstream : torch.nn.Module
        Called as ``upstream(wavs)`` (e.g. an
        :class:`~speechbrain_skill.lobes.upstream.SSLUpstream`).
    seconds : float
        Length of each waveform.
    repeats : int
        Timed passes.
    batch_size : int
        Waveforms per pass.
    device : str
        Device to run on.
    seed : int
        Seed of the noise.

    Returns
    -------
    dict
        ``x_real_time`` (audio seconds per wall-clock second, fastest pass),
        ``ms_per_second`` (wall-clock milliseconds per audio second, fastest
        pass), ``cpu_ms_per_second`` (process CPU milliseconds per audio
        second, least costly pass), ``pass_seconds`` (all passes) and the
        settings.

    Example
    -------
    >>> layer = torch.nn.Linear(1, 1)
    >>> stats = measure_speed(lambda w: layer(w.unsqueeze(-1)), 0.5, repeats=2)
    >>> stats["x_real_time"] > 0, stats["audio_seconds_per_pass"]
    (True, 0.5)
    """
    generator = torch.Generator().manual_seed(seed)
    num_samples = int(seconds * SAMPLE_RATE)
    wavs = 0.1 * torch.randn(batch_size, num_samples, generator=generator)
    wavs = wavs.to(device)
    times, cpu_times = [], []
    with torch.no_grad():
        for index in range(repeats + 1):
            _synchronize(device)
            start, cpu_start = time.perf_counter(), time.process_time()
            upstream(wavs)
            _synchronize(device)
            if index > 0:  # the first pass is a warm-up
                times.append(time.perf_counter() - start)
                cpu_times.append(time.process_time() - cpu_start)
    fastest = min(times)
    audio = seconds * batch_size
    return {
        "x_real_time": audio / fastest,
        "ms_per_second": 1000.0 * fastest / audio,
        "cpu_ms_per_second": 1000.0 * min(cpu_times) / audio,
        "pass_seconds": times,
        "audio_seconds_per_pass": audio,
        "repeats": repeats,
        "batch_size": batch_size,
        "device": str(device),
        "threads": torch.get_num_threads(),
    }
