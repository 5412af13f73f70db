"""HuBERT / wav2vec 2.0 span masking of the frames fed to the transformer.

For an utterance of ``n`` real frames, ``int(mask_prob * n / span + u)`` span
starts (``u ~ U(0, 1)``: probabilistic rounding; at least ``min_masks``) are
drawn without replacement among the positions where a whole span fits, and
``span`` frames are masked from each. Spans may overlap, so the masked fraction
is below ``mask_prob`` (about 50% for HuBERT's 0.8 and 10). Padding frames are
never masked.
"""

import torch


def num_spans(length, mask_prob, span_length, min_masks, generator=None):
    """Number of span starts for an utterance of ``length`` frames.

    Arguments
    ---------
    length : int
        Real frames.
    mask_prob : float
        Fraction of frames chosen as span starts times ``span_length``.
    span_length : int
        Frames per span.
    min_masks : int
        Lower bound on the number of spans.
    generator : torch.Generator, optional
        Source of the rounding draw.

    Returns
    -------
    int

    Example
    -------
    >>> num_spans(100, 0.8, 10, 2, torch.Generator().manual_seed(0)) in (8, 9)
    True
    """
    if length <= 0:
        return 0
    span = min(span_length, length)
    draw = float(torch.rand(1, generator=generator))
    count = max(int(mask_prob * length / span + draw), min_masks)
    return min(count, length - span + 1)


def compute_span_mask(
    frame_lens, max_frames, mask_prob=0.8, span_length=10, min_masks=2, generator=None
):
    """Boolean mask (batch, max_frames), True on masked frames.

    Arguments
    ---------
    frame_lens : torch.Tensor
        Real frames per utterance (batch,).
    max_frames : int
        Padded number of frames.
    mask_prob : float
        HuBERT's mask probability (0.8 in HuBERT Base).
    span_length : int
        Span length in frames (10 in HuBERT Base). Utterances shorter than
        a span get one span covering them.
    min_masks : int
        Minimum number of spans per utterance (2 in HuBERT).
    generator : torch.Generator, optional
        CPU generator, for reproducible masks (validation).

    Returns
    -------
    torch.Tensor
        On the device of ``frame_lens``.

    Example
    -------
    >>> mask = compute_span_mask(torch.tensor([50, 20]), 50, 0.5, 5,
    ...                          generator=torch.Generator().manual_seed(0))
    >>> mask.shape, bool(mask[1, 20:].any())
    (torch.Size([2, 50]), False)
    """
    if not 0.0 <= mask_prob <= 1.0:
        raise ValueError(f"mask_prob must be in [0, 1], got {mask_prob}.")
    if span_length < 1:
        raise ValueError(f"span_length must be >= 1, got {span_length}.")
    mask = torch.zeros(len(frame_lens), max_frames, dtype=torch.bool)
    for row, length in enumerate(frame_lens.tolist()):
        length = min(int(length), max_frames)
        count = num_spans(length, mask_prob, span_length, min_masks, generator)
        if count == 0:
            continue
        span = min(span_length, length)
        starts = torch.randperm(length - span + 1, generator=generator)[:count]
        positions = (starts.unsqueeze(1) + torch.arange(span).unsqueeze(0)).flatten()
        mask[row, positions] = True
    return mask.to(frame_lens.device)
