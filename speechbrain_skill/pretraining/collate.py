"""Batches of frame-aligned crops with their cluster labels.

As in HuBERT, every utterance of a batch is cropped to the length of the
shortest one (capped at ``max_crop_seconds``), so batches carry no padding.
Crops start on a frame boundary (a multiple of the 320-sample hop), so the
labels of the crop are a plain slice of the utterance's labels.
"""

import torch

from speechbrain_skill.data.audio import BadAudioError, seconds_to_samples
from speechbrain_skill.data.dataio import SkipBadAudioCollate
from speechbrain_skill.lobes.frames import conv_output_lengths

WAVLM_KERNELS = (10, 3, 3, 3, 3, 2, 2)
WAVLM_STRIDES = (5, 2, 2, 2, 2, 2, 2)


def frame_hop(strides):
    """Samples between two frames of a conv stack: the product of its strides.

    Example
    -------
    >>> frame_hop(WAVLM_STRIDES)
    320
    """
    hop = 1
    for stride in strides:
        hop *= stride
    return hop


class LabelledCropCollate:
    """Crop a batch to its shortest utterance on frame boundaries and add labels.

    Examples whose labels are missing or disagree with the audio length are
    skipped (listed in ``batch.skipped`` with the reason), as are bad audio
    files (see :class:`~speechbrain_skill.data.dataio.SkipBadAudioCollate`).

    Arguments
    ---------
    labels : FrameLabels
        Labels of every utterance (see :mod:`~.labels`).
    max_crop_seconds : float, optional
        Longest crop.
    random_crop : bool
        Random frame-aligned offsets (training) or the start (validation).
    conv_kernel, conv_stride : sequence of int
        The model's conv front-end (frame counting).

    Example
    -------
    >>> from speechbrain_skill.pretraining.labels import FrameLabels
    >>> labels = FrameLabels({"a": torch.arange(49), "b": torch.arange(24)}, 49)
    >>> collate = LabelledCropCollate(labels, random_crop=False)
    >>> batch = collate([{"id": "a", "sig": torch.randn(16000)},
    ...                  {"id": "b", "sig": torch.randn(8000)}])
    >>> batch.sig.data.shape, batch.labels.data.shape
    (torch.Size([2, 8000]), torch.Size([2, 24]))
    """

    def __init__(
        self,
        labels,
        max_crop_seconds=None,
        random_crop=True,
        conv_kernel=WAVLM_KERNELS,
        conv_stride=WAVLM_STRIDES,
    ):
        self.labels = labels
        self.max_samples = seconds_to_samples(max_crop_seconds)
        self.random_crop = random_crop
        self.conv_kernel = tuple(conv_kernel)
        self.conv_stride = tuple(conv_stride)
        self.hop = frame_hop(self.conv_stride)
        self.base = SkipBadAudioCollate()

    def num_frames(self, samples):
        """Frames the model outputs for ``samples`` samples."""
        lengths = torch.tensor([samples])
        return int(conv_output_lengths(lengths, self.conv_kernel, self.conv_stride))

    def _check(self, example):
        """Return a skip reason, or None when the example is usable."""
        utt_id = example.get("id")
        if utt_id not in self.labels:
            return "no frame labels"
        expected = self.num_frames(example["sig"].numel())
        if len(self.labels[utt_id]) != expected:
            return (
                f"labels/audio mismatch ({len(self.labels[utt_id])} labels, "
                f"{expected} frames): relabel after changing the data"
            )
        return None

    def __call__(self, examples):
        """Crop, attach ``labels`` and pad (nothing left to pad)."""
        usable, other = [], []
        for example in examples:
            sig = example.get("sig")
            if isinstance(sig, torch.Tensor):
                reason = self._check(example)
                if reason is None:
                    usable.append(example)
                    continue
                example = dict(example, sig=BadAudioError(example.get("id"), reason))
            other.append(example)
        if usable:
            target = min(ex["sig"].numel() for ex in usable)
            if self.max_samples is not None:
                target = min(target, self.max_samples)
            frames = self.num_frames(target)
            usable = [self._crop(ex, target, frames) for ex in usable]
        return self.base(usable + other)

    def _crop(self, example, target, frames):
        sig = example["sig"]
        labels = self.labels[example["id"]]
        max_offset = (sig.numel() - target) // self.hop
        offset = 0
        if self.random_crop and max_offset > 0:
            offset = int(torch.randint(max_offset + 1, (1,)))
        start = offset * self.hop
        return dict(
            example,
            sig=sig[start : start + target],
            labels=labels[offset : offset + frames],
        )
