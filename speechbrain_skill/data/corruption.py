"""What the student hears in robust distillation: noisy and reverberant speech.

:class:`SpeechCorruption` is a ``student_input_transform`` for
:class:`~speechbrain_skill.distillation.brains.DistillationBrain`: the teacher keeps the
clean batch, the student gets a corrupted copy. Per utterance it draws one of
``clean``, ``noise``, ``reverb``, ``noise_reverb`` (uniformly among those
configured; RobustDistiller uses all four), then:

* reverberation: SpeechBrain's ``AddReverb`` with an RIR csv, otherwise a
  synthetic RIR (:mod:`speechbrain_skill.data.rir`);
* noise at an SNR drawn uniformly in [snr_low, snr_high] dB: a file from a
  SpeechBrain noise csv (``file_noise_prob``) or white noise; without a csv,
  coloured (1/f^alpha) noise takes the file share. SpeechBrain's ``AddNoise``
  loads and scales the noise.

In a recipe, :func:`add_corrupted_copy` applies it in the data loader
workers, one unpadded utterance at a time (RIRs and noises drawn there, in
parallel with training); the Brain then reads the batch's ``noisy_sig`` and
does not corrupt anything in the training step.

Only the real samples of an utterance are corrupted: each utterance is
processed unpadded, so padding stays exactly as it was, the reverberation
tail does not spill into it, and the SNR is measured on the real samples.
``AddNoise`` also scales the clean signal down by ``1 - 1 / (10^(snr/20) + 1)``;
that factor is undone, so the corrupted input is ``clean + noise`` at the
requested SNR and the clean reference (teacher input, enhancement target)
stays level-matched.
"""

import functools
import os

import speechbrain as sb
import torch
from speechbrain.augment.time_domain import AddNoise, AddReverb, pink_noise_like

from speechbrain_skill.data.audio import BadAudioError
from speechbrain_skill.data.rir import SyntheticReverb
from speechbrain_skill.lobes.frames import relative_to_absolute

CORRUPTIONS = ("clean", "noise", "reverb", "noise_reverb")
SAMPLE_RATE = 16000


def snr_db(clean, noisy):
    """SNR in dB of ``noisy`` against its clean part (noise = noisy - clean).

    Example
    -------
    >>> clean = torch.ones(100)
    >>> round(float(snr_db(clean, clean + 0.1)), 3)
    20.0
    """
    noise = noisy - clean
    return 10 * torch.log10(clean.pow(2).sum() / noise.pow(2).sum().clamp(min=1e-20))


class NoiseAtSNR(torch.nn.Module):
    """Add noise to unpadded waveforms at an exact SNR, keeping the clean level.

    Arguments
    ---------
    noise_csv : str, optional
        SpeechBrain noise csv (``ID, duration, wav, wav_format, wav_opts``),
        e.g. MUSAN noise or UrbanSound8K.
    file_noise_prob : float
        Probability of a noise file; the rest is white noise. Without a
        csv, coloured noise takes this share.
    colour_alpha_low, colour_alpha_high : float
        Range of the exponent of coloured 1/f^alpha noise (1 = pink,
        2 = brown).
    replacements : dict, optional
        ``$key`` replacements in the noise csv paths.
    num_workers : int
        Workers loading noise files.
    sample_rate : int
        Sample rate of speech and noise files (noise is resampled).

    Example
    -------
    >>> add = NoiseAtSNR()
    >>> clean = torch.randn(1, 16000)
    >>> round(float(snr_db(clean, add(clean, 5.0))), 2)
    5.0
    """

    def __init__(
        self,
        noise_csv=None,
        file_noise_prob=0.7,
        colour_alpha_low=0.5,
        colour_alpha_high=2.0,
        replacements=None,
        num_workers=0,
        sample_rate=SAMPLE_RATE,
    ):
        super().__init__()
        if not 0.0 <= file_noise_prob <= 1.0:
            raise ValueError(
                f"file_noise_prob must be in [0, 1], got {file_noise_prob}"
            )
        self.file_noise_prob = float(file_noise_prob)
        self.white = AddNoise(noise_funct=torch.randn_like)
        if noise_csv:
            self.other = AddNoise(
                csv_file=str(noise_csv),
                pad_noise=True,
                replacements=dict(replacements or {}),
                num_workers=num_workers,
                noise_sample_rate=sample_rate,
                clean_sample_rate=sample_rate,
            )
            self.other_kind = "file"
        else:
            colour = functools.partial(
                pink_noise_like,
                alpha_low=colour_alpha_low,
                alpha_high=colour_alpha_high,
            )
            self.other = AddNoise(noise_funct=colour)
            self.other_kind = "coloured"
        self.last_kind = None

    def forward(self, waveforms, snr):
        """Add one noise to (batch, time) unpadded waveforms at ``snr`` dB.

        Arguments
        ---------
        waveforms : torch.Tensor
            (batch, time), every sample real (no padding).
        snr : float
            Signal-to-noise ratio in dB, measured over the whole rows.

        Returns
        -------
        torch.Tensor
            ``waveforms + noise``.
        """
        use_other = float(torch.rand(())) < self.file_noise_prob
        adder = self.other if use_other else self.white
        self.last_kind = self.other_kind if use_other else "white"
        # AddNoise draws its SNR in [snr_low, snr_high]: pin it to ours.
        adder.snr_low = adder.snr_high = float(snr)
        full = torch.ones(waveforms.shape[0], device=waveforms.device)
        mixed = adder(waveforms, full)
        amplitude_ratio = 10 ** (float(snr) / 20)
        return mixed * (amplitude_ratio + 1) / amplitude_ratio


class SpeechCorruption(torch.nn.Module):
    """Corrupt the real samples of each utterance with noise and/or reverberation.

    Arguments
    ---------
    corruptions : list of str
        The choices drawn uniformly per utterance, among :data:`CORRUPTIONS`.
    snr_low, snr_high : float
        SNR range in dB.
    noise_csv : str, optional
        SpeechBrain noise csv; see :class:`NoiseAtSNR`.
    file_noise_prob : float
        Share of file (or coloured) noise against white noise.
    rir_csv : str, optional
        SpeechBrain RIR csv for ``AddReverb``; without it, synthetic RIRs.
    rt60_low, rt60_high : float
        RT60 range of synthetic RIRs (seconds).
    drr_low, drr_high : float
        Direct-to-reverberant ratio range of synthetic RIRs (dB).
    replacements : dict, optional
        ``$key`` replacements in the csv paths.
    num_workers : int
        Workers loading noise / RIR files.
    sample_rate : int
        Sample rate.

    Example
    -------
    >>> corrupt = SpeechCorruption(corruptions=["noise_reverb"])
    >>> wavs = torch.randn(2, 8000)
    >>> wavs[1, 6000:] = 0.0
    >>> out = corrupt(wavs, torch.tensor([1.0, 0.75]))
    >>> out.shape, bool((out[1, 6000:] == 0).all()), corrupt.last_corruptions
    (torch.Size([2, 8000]), True, ['noise_reverb', 'noise_reverb'])
    """

    def __init__(
        self,
        corruptions=CORRUPTIONS,
        snr_low=0.0,
        snr_high=20.0,
        noise_csv=None,
        file_noise_prob=0.7,
        rir_csv=None,
        rt60_low=0.2,
        rt60_high=1.0,
        drr_low=-5.0,
        drr_high=10.0,
        replacements=None,
        num_workers=0,
        sample_rate=SAMPLE_RATE,
    ):
        super().__init__()
        self.corruptions = list(corruptions)
        unknown = sorted(set(self.corruptions) - set(CORRUPTIONS))
        if not self.corruptions or unknown:
            raise ValueError(
                f"corruptions must be a non-empty subset of {CORRUPTIONS}, "
                f"got {self.corruptions}."
            )
        if snr_low > snr_high:
            raise ValueError(f"snr_low {snr_low} is above snr_high {snr_high}.")
        self.snr_range = (float(snr_low), float(snr_high))
        for name, path in (("noise_csv", noise_csv), ("rir_csv", rir_csv)):
            if path and not os.path.isfile(path):
                raise FileNotFoundError(f"{name} '{path}' does not exist.")
        self.noise = NoiseAtSNR(
            noise_csv,
            file_noise_prob,
            replacements=replacements,
            num_workers=num_workers,
            sample_rate=sample_rate,
        )
        if rir_csv:
            self.reverb = AddReverb(
                str(rir_csv),
                replacements=dict(replacements or {}),
                num_workers=num_workers,
                reverb_sample_rate=sample_rate,
                clean_sample_rate=sample_rate,
            )
        else:
            self.reverb = SyntheticReverb(
                rt60_low, rt60_high, drr_low, drr_high, sample_rate
            )
        self.last_corruptions = []
        self.last_snrs = []

    def draw_snr(self):
        """An SNR in dB, uniform in the configured range."""
        low, high = self.snr_range
        return low + (high - low) * float(torch.rand(()))

    @torch.no_grad()
    def forward(self, wavs, wav_lens=None):
        """Return a corrupted copy of a padded batch; padding is left untouched.

        Arguments
        ---------
        wavs : torch.Tensor
            (batch, time).
        wav_lens : torch.Tensor, optional
            SpeechBrain relative lengths (None: no padding).

        Returns
        -------
        torch.Tensor
            Same shape, dtype and device.
        """
        if wav_lens is None:
            wav_lens = torch.ones(wavs.shape[0], device=wavs.device)
        lengths = relative_to_absolute(wav_lens, wavs.shape[1]).tolist()
        out = wavs.clone()
        self.last_corruptions, self.last_snrs = [], []
        for index, length in enumerate(lengths):
            choice = self.corruptions[int(torch.randint(len(self.corruptions), ()))]
            snr = None
            real = wavs[index : index + 1, :length].float()
            if length > 0 and "reverb" in choice:
                real = self.reverb(real)
            if length > 0 and "noise" in choice:
                snr = self.draw_snr()
                real = self.noise(real, snr)
            out[index, :length] = real[0].to(out.dtype)
            self.last_corruptions.append(choice)
            self.last_snrs.append(snr)
        return out


CORRUPTED_KEY = "noisy_sig"


def add_corrupted_copy(dataset, corruption, key=CORRUPTED_KEY):
    """Give every example a corrupted copy of its ``sig``, made in the loader workers.

    The copy is the ``corruption`` of the one unpadded (already cropped)
    waveform: the same processing the Brain applied per utterance to a
    padded batch, moved out of the training step. A bad file's error passes
    through (the collate function skips the example).

    Arguments
    ---------
    dataset : speechbrain.dataio.dataset.DynamicItemDataset
        A dataset with a ``sig`` item, e.g. from
        :func:`~speechbrain_skill.data.dataio.make_audio_dataset`.
    corruption : callable or None
        ``(wavs (1, time), wav_lens) -> corrupted wavs``, e.g.
        :class:`SpeechCorruption`; None leaves the dataset unchanged.
    key : str
        Name of the new item.

    Returns
    -------
    bool
        Whether the item was added.

    Example
    -------
    >>> from speechbrain.dataio.dataset import DynamicItemDataset
    >>> data = DynamicItemDataset({"a": {"sig": torch.ones(800)}})
    >>> data.set_output_keys(["id", "sig"])
    >>> add_corrupted_copy(data, SpeechCorruption(corruptions=["noise"]))
    True
    >>> example = data[0]
    >>> sorted(example), bool((example["noisy_sig"] != example["sig"]).any())
    (['id', 'noisy_sig', 'sig'], True)
    """
    if corruption is None:
        return False

    @sb.utils.data_pipeline.takes("sig")
    @sb.utils.data_pipeline.provides(key)
    def corrupt(sig):
        """Corrupt one waveform; a bad-audio marker passes through."""
        if isinstance(sig, BadAudioError):
            return sig
        return corruption(sig.unsqueeze(0))[0]

    keys = list(dataset.pipeline.output_mapping)
    dataset.add_dynamic_item(corrupt)
    dataset.set_output_keys([*keys, key])
    return True
