"""Length and padding helpers shared by teachers, students and losses.

SpeechBrain passes relative lengths (``wav_lens`` in [0, 1]); the models need
absolute sample counts, frame counts after the conv feature extractor, and
boolean masks of the real (non-padding) frames.
"""

import torch


def relative_to_absolute(wav_lens, max_len, batch_size=1, device=None):
    """Convert SpeechBrain relative lengths to integer lengths.

    Arguments
    ---------
    wav_lens : torch.Tensor or None
        Relative lengths in [0, 1], shape (batch,). None means all full.
    max_len : int
        Padded length of the batch.
    batch_size : int
        Number of utterances when ``wav_lens`` is None.
    device : torch.device, optional
        Device of the result when ``wav_lens`` is None.

    Returns
    -------
    torch.Tensor
        Long tensor of absolute lengths.

    Example
    -------
    >>> relative_to_absolute(torch.tensor([1.0, 0.5]), 10).tolist()
    [10, 5]
    >>> relative_to_absolute(None, 10, batch_size=3).tolist()
    [10, 10, 10]
    """
    if wav_lens is None:
        return torch.full((batch_size,), max_len, dtype=torch.long, device=device)
    return torch.round(wav_lens.float() * max_len).long().clamp(0, max_len)


def lengths_to_mask(lengths, max_len=None):
    """Boolean mask (batch, max_len), True on real positions.

    Arguments
    ---------
    lengths : torch.Tensor
        Integer lengths, shape (batch,).
    max_len : int, optional
        Width of the mask (defaults to ``lengths.max()``).

    Returns
    -------
    torch.Tensor

    Example
    -------
    >>> lengths_to_mask(torch.tensor([2, 3]), 4).int().tolist()
    [[1, 1, 0, 0], [1, 1, 1, 0]]
    """
    if max_len is None:
        max_len = int(lengths.max())
    positions = torch.arange(max_len, device=lengths.device)
    return positions.unsqueeze(0) < lengths.unsqueeze(1)


def conv_output_lengths(lengths, kernels, strides):
    """Number of frames a stack of unpadded 1-d convolutions outputs.

    Arguments
    ---------
    lengths : torch.Tensor
        Input lengths in samples.
    kernels : sequence of int
        Kernel sizes.
    strides : sequence of int
        Strides.

    Returns
    -------
    torch.Tensor
        Output lengths (long).

    Example
    -------
    >>> k, s = (10, 3, 3, 3, 3, 2, 2), (5, 2, 2, 2, 2, 2, 2)
    >>> conv_output_lengths(torch.tensor([16000, 400]), k, s).tolist()
    [49, 1]
    """
    lengths = lengths.long()
    for kernel, stride in zip(kernels, strides):
        lengths = torch.div(lengths - kernel, stride, rounding_mode="floor") + 1
    return lengths.clamp(min=0)


def normalize_waveforms(wavs, lengths, eps=1e-7):
    """Zero-mean, unit-variance per utterance over its real samples; padding stays 0.

    This is what Hugging Face feature extractors with ``do_normalize=True`` do
    to each unpadded utterance.

    Arguments
    ---------
    wavs : torch.Tensor
        Batch of waveforms (batch, time).
    lengths : torch.Tensor
        Absolute lengths in samples.
    eps : float
        Variance floor.

    Returns
    -------
    torch.Tensor

    Example
    -------
    >>> x = torch.tensor([[1.0, 3.0, 0.0]])
    >>> normalize_waveforms(x, torch.tensor([2])).abs().tolist()
    [[1.0, 1.0, 0.0]]
    """
    mask = lengths_to_mask(lengths.to(wavs.device), wavs.shape[1]).to(wavs.dtype)
    count = mask.sum(dim=1, keepdim=True).clamp(min=1)
    mean = (wavs * mask).sum(dim=1, keepdim=True) / count
    var = (((wavs - mean) * mask) ** 2).sum(dim=1, keepdim=True) / count
    return (wavs - mean) / torch.sqrt(var + eps) * mask
