"""The padded batch every export is checked on, and the difference measured."""

import torch

PARITY_LENGTHS = (16000, 11000, 6000)


def parity_batch(lengths=PARITY_LENGTHS, seed=0):
    """Random speech-like batch: zero padding after each real length.

    Arguments
    ---------
    lengths : sequence of int
        Real samples per utterance.
    seed : int
        Seed.

    Returns
    -------
    wavs : torch.Tensor
        (batch, max length).
    wav_lengths : torch.Tensor
        (batch,) long.

    Example
    -------
    >>> wavs, lengths = parity_batch((10, 4))
    >>> wavs.shape, float(wavs[1, 4:].abs().sum())
    (torch.Size([2, 10]), 0.0)
    """
    generator = torch.Generator().manual_seed(seed)
    wav_lengths = torch.tensor(list(lengths), dtype=torch.long)
    wavs = 0.1 * torch.randn(len(lengths), int(wav_lengths.max()), generator=generator)
    return wavs * (torch.arange(wavs.shape[1]) < wav_lengths[:, None]), wav_lengths


def max_diff_on_real_frames(hidden, reference, frame_lens):
    """Largest |hidden - reference| over the real frames of every state.

    Arguments
    ---------
    hidden, reference : torch.Tensor
        (states, batch, frames, width).
    frame_lens : torch.Tensor
        Real frames per utterance.

    Returns
    -------
    float

    Example
    -------
    >>> a = torch.zeros(1, 2, 3, 1); b = a.clone(); b[0, 1, 2] = 5.0
    >>> max_diff_on_real_frames(a, b, torch.tensor([3, 2]))
    0.0
    """
    worst = 0.0
    for row, count in enumerate(frame_lens.tolist()):
        diff = (hidden[:, row, :count] - reference[:, row, :count]).abs()
        worst = max(worst, float(diff.max()))
    return worst
