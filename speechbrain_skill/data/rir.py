"""Synthetic room impulse responses, for reverberation when no RIR corpus is given.

A synthetic RIR is a unit direct-path impulse followed by a diffuse tail of
Gaussian noise whose amplitude decays by 60 dB over the reverberation time
RT60, scaled to a direct-to-reverberant energy ratio (DRR). This is the
textbook statistical model of late reverberation, not a room simulation: it
has no early reflections or frequency-dependent decay, which is enough to make
the student robust to smearing when real RIRs (e.g. OpenSLR 26/28) are absent.
"""

import math

import torch
from speechbrain.processing.signal_processing import reverberate

SAMPLE_RATE = 16000


def synthetic_rir(rt60, drr_db, sample_rate=SAMPLE_RATE, generator=None, device=None):
    """One synthetic room impulse response.

    Arguments
    ---------
    rt60 : float
        Reverberation time in seconds (the tail is this long).
    drr_db : float
        Direct-to-reverberant energy ratio in dB.
    sample_rate : int
        Sample rate of the response.
    generator : torch.Generator, optional
        Random generator of the tail.
    device : torch.device, optional
        Device of the result.

    Returns
    -------
    torch.Tensor
        (samples,), the direct path at index 0 with value 1 and every tail
        sample smaller in magnitude (SpeechBrain's ``reverberate`` aligns the
        output on the largest RIR sample).

    Example
    -------
    >>> rir = synthetic_rir(0.3, 6.0, generator=torch.Generator().manual_seed(0))
    >>> rir.shape, float(rir[0]), bool(rir[1:].abs().max() < 1)
    (torch.Size([4800]), 1.0, True)
    >>> round(float(10 * torch.log10(1 / rir[1:].pow(2).sum())), 3)  # DRR
    6.0
    """
    if rt60 <= 0:
        raise ValueError(f"rt60 must be positive, got {rt60}.")
    length = max(int(round(rt60 * sample_rate)), 2)
    time = torch.arange(1, length, device=device, dtype=torch.float32) / sample_rate
    tail = torch.randn(length - 1, generator=generator).to(device)
    tail = tail * torch.pow(10.0, -3.0 * time / rt60)
    tail = tail * math.sqrt(10 ** (-drr_db / 10)) / tail.pow(2).sum().sqrt()
    # Keep the direct path the largest sample even at very low DRR.
    tail = tail.clamp(-0.95, 0.95)
    return torch.cat([torch.ones(1, device=device), tail])


class SyntheticReverb(torch.nn.Module):
    """Reverberate each waveform with its own freshly drawn synthetic RIR.

    RT60 and DRR are drawn uniformly per waveform; the convolution and the
    amplitude rescaling are SpeechBrain's (``reverberate``, as in its
    ``AddReverb``), so the output keeps the input's average amplitude and is
    aligned on the direct path.

    Arguments
    ---------
    rt60_low, rt60_high : float
        Range of the reverberation time in seconds.
    drr_low, drr_high : float
        Range of the direct-to-reverberant ratio in dB.
    sample_rate : int
        Sample rate of the waveforms.

    Example
    -------
    >>> reverb = SyntheticReverb(0.2, 0.4)
    >>> reverb(torch.randn(2, 8000)).shape
    torch.Size([2, 8000])
    """

    def __init__(
        self,
        rt60_low=0.2,
        rt60_high=1.0,
        drr_low=-5.0,
        drr_high=10.0,
        sample_rate=SAMPLE_RATE,
    ):
        super().__init__()
        if not 0 < rt60_low <= rt60_high:
            raise ValueError(
                f"Need 0 < rt60_low <= rt60_high, got {rt60_low}, {rt60_high}."
            )
        if drr_low > drr_high:
            raise ValueError(f"drr_low {drr_low} is above drr_high {drr_high}.")
        self.rt60_range = (float(rt60_low), float(rt60_high))
        self.drr_range = (float(drr_low), float(drr_high))
        self.sample_rate = sample_rate

    def draw(self, device=None):
        """A synthetic RIR with random RT60 and DRR (global torch RNG)."""
        rt60 = _uniform(*self.rt60_range)
        drr = _uniform(*self.drr_range)
        return synthetic_rir(rt60, drr, self.sample_rate, device=device)

    def forward(self, waveforms):
        """Reverberate (batch, time) waveforms, one RIR per row."""
        rows = [
            reverberate(row.unsqueeze(0), self.draw(row.device), rescale_amp="avg")
            for row in waveforms
        ]
        return torch.cat(rows, dim=0)


def _uniform(low, high):
    return low + (high - low) * float(torch.rand(()))
