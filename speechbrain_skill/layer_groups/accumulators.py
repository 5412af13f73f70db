"""Streaming accumulators of layer similarity over batches of hidden states.

This "feature-space" form only needs dim x dim cross products, so it streams
over any number of frames (:class:`LinearCKAAccumulator`). It is the biased
(plug-in) estimator: on few frames it is far from 0 even for independent
features. For small samples,
:func:`~speechbrain_skill.layer_groups.cka.linear_cka` with ``unbiased=True``
and the minibatch estimator (:class:`MinibatchCKAAccumulator`; Nguyen et al. 2021,
unbiased HSIC of Song et al. 2012 averaged over minibatches of frames) remove
that bias.

Measures, selected by name in
:func:`~speechbrain_skill.layer_groups.similarity.compute_layer_similarity`:

``cka`` (default)
    Streaming linear CKA over all (kept) frames: float32 products, float64
    running sums (float64 products on request).
    Memory: (L+1)(L+2)/2 matrices of dim x dim float64, about 430 MB for
    13 states of width 768 (see :func:`accumulator_memory_bytes`).
``cka_minibatch``
    Mean unbiased HSIC over minibatches of frames; memory (L+1) m x m float64
    Gram matrices (about 110 MB for m = 1024), cheaper in time as well. The
    Gram products run in float32 (float64 on request), the rest in float64.
``cosine``
    Mean cosine between time-aligned frames of two layers.

Padding frames are never used: only the first ``frame_lens[b]`` frames of
utterance ``b`` enter any measure.
"""

import logging
import math

import numpy as np
import torch

from speechbrain_skill.layer_groups.cka import (
    MIN_HSIC_FRAMES,
    _normalise,
    minibatch_hsic_matrix,
)

logger = logging.getLogger(__name__)

DEFAULT_CHUNK_FRAMES = 1024
DEFAULT_MINIBATCH_SIZE = 1024


def select_frames(
    hidden, frame_lens=None, max_frames_per_utterance=None, generator=None
):
    """Gather the real (non-padding) frames of a batch of hidden states.

    Arguments
    ---------
    hidden : torch.Tensor
        (num_states, batch, time, dim) hidden states.
    frame_lens : torch.Tensor, optional
        Real frame count of each utterance (absolute); None means no padding.
    max_frames_per_utterance : int, optional
        Keep at most this many frames of each utterance, drawn uniformly
        without replacement (kept in time order).
    generator : torch.Generator, optional
        CPU generator used for the draw (makes it reproducible).

    Returns
    -------
    torch.Tensor
        (num_states, frames, dim), utterances concatenated.

    Example
    -------
    >>> hidden = torch.zeros(3, 2, 5, 4)
    >>> select_frames(hidden, torch.tensor([5, 2])).shape
    torch.Size([3, 7, 4])
    >>> select_frames(hidden, torch.tensor([5, 2]), max_frames_per_utterance=3).shape
    torch.Size([3, 5, 4])
    """
    if hidden.ndim != 4:
        raise ValueError(
            "Expected hidden states of shape (num_states, batch, time, dim), "
            f"got {tuple(hidden.shape)}."
        )
    batch, time_steps = hidden.shape[1], hidden.shape[2]
    if frame_lens is None:
        lengths = [time_steps] * batch
    else:
        lengths = [min(int(n), time_steps) for n in frame_lens.tolist()]
    if max_frames_per_utterance is not None and max_frames_per_utterance < 1:
        raise ValueError(
            f"max_frames_per_utterance must be >= 1, got {max_frames_per_utterance}."
        )
    pieces = []
    for index, length in enumerate(lengths):
        if length <= 0:
            continue
        if max_frames_per_utterance is not None and length > max_frames_per_utterance:
            keep = torch.randperm(length, generator=generator)
            keep = keep[:max_frames_per_utterance].sort().values.to(hidden.device)
            pieces.append(hidden[:, index].index_select(1, keep))
        else:
            pieces.append(hidden[:, index, :length])
    if not pieces:
        return hidden.new_zeros(hidden.shape[0], 0, hidden.shape[3])
    return torch.cat(pieces, dim=1)


class _Accumulator:
    """Shared bookkeeping: shape checks and frame count."""

    def __init__(self, device="cpu"):
        self.device = torch.device(device)
        self.num_states = None
        self.dim = None
        self.num_frames = 0

    def _check(self, frames):
        if frames.ndim != 3:
            raise ValueError(
                "Expected frames of shape (num_states, frames, dim), got "
                f"{tuple(frames.shape)}."
            )
        if self.num_states is None:
            self.num_states, self.dim = frames.shape[0], frames.shape[2]
        elif (frames.shape[0], frames.shape[2]) != (self.num_states, self.dim):
            raise ValueError(
                f"Frames of shape {tuple(frames.shape)} do not match earlier "
                f"batches ({self.num_states} states of width {self.dim})."
            )
        return frames.to(self.device)

    def _require_frames(self, minimum=2):
        if self.num_frames < minimum:
            raise ValueError(
                f"Not enough frames to compute a similarity: {self.num_frames} "
                f"seen, at least {minimum} needed."
            )


class LinearCKAAccumulator(_Accumulator):
    """Streaming linear CKA between all pairs of states (feature-space form).

    For every pair i <= j it accumulates the dim x dim cross product of the
    frames into a float64 sum, plus per-state sums; the columns are centred only at the
    end. Frames are shifted by the mean of the first batch before
    accumulation, which avoids the cancellation of ``S - n mu mu^T`` when the
    features have a large mean.

    Memory: ``S (S + 1) / 2 * dim^2 * 8`` bytes for S states, plus one chunk
    of ``S * chunk_frames * dim * 8`` bytes while updating.

    Arguments
    ---------
    device : str or torch.device
        Where the accumulators live and the products run.
    chunk_frames : int
        Frames multiplied at a time.
    product_dtype : torch.dtype
        Precision of the per-chunk products: float32 by default (about twice
        faster than float64 on CPU, 30-60x on consumer GPUs; the CKA stays
        within 1e-5 of the float64 result, see tests/test_similarity.py),
        float64 for the exact path. The running sums are always float64.

    Example
    -------
    >>> frames = torch.randn(3, 100, 4, generator=torch.Generator().manual_seed(0))
    >>> acc = LinearCKAAccumulator()
    >>> acc.update(frames[:, :60])
    >>> acc.update(frames[:, 60:])
    >>> matrix = acc.compute()
    >>> matrix.shape, bool(np.allclose(np.diag(matrix), 1.0))
    ((3, 3), True)
    """

    def __init__(
        self, device="cpu", chunk_frames=DEFAULT_CHUNK_FRAMES, product_dtype=None
    ):
        super().__init__(device)
        if chunk_frames < 1:
            raise ValueError(f"chunk_frames must be >= 1, got {chunk_frames}.")
        self.chunk_frames = int(chunk_frames)
        self.product_dtype = product_dtype or torch.float32
        self._shift = None
        self._sums = None
        self._cross = None

    def update(self, frames):
        """Add frames of shape (num_states, frames, dim)."""
        frames = self._check(frames)
        if frames.shape[1] == 0:
            return
        if self._shift is None:
            states, dim = self.num_states, self.dim
            self._shift = frames.to(torch.float64).mean(dim=1, keepdim=True)
            self._sums = torch.zeros(
                states, dim, dtype=torch.float64, device=self.device
            )
            self._cross = {
                (i, j): torch.zeros(dim, dim, dtype=torch.float64, device=self.device)
                for i in range(states)
                for j in range(i, states)
            }
        for start in range(0, frames.shape[1], self.chunk_frames):
            chunk = frames[:, start : start + self.chunk_frames]
            chunk = chunk.to(self.product_dtype) - self._shift.to(self.product_dtype)
            self._sums += chunk.sum(dim=1, dtype=torch.float64)
            for (i, j), cross in self._cross.items():
                cross += (chunk[i].T @ chunk[j]).to(torch.float64)
            self.num_frames += chunk.shape[1]

    def compute(self):
        """Return the (num_states, num_states) CKA matrix as float64 numpy."""
        self._require_frames()
        n = self.num_frames
        means = self._sums / n
        norms = {}
        values = {}
        for (i, j), cross in self._cross.items():
            centred = cross - n * torch.outer(means[i], means[j])
            values[i, j] = float(centred.square().sum())
            if i == j:
                norms[i] = math.sqrt(values[i, j])
        matrix = np.empty((self.num_states, self.num_states))
        for (i, j), value in values.items():
            matrix[i, j] = matrix[j, i] = _normalise(
                value, norms[i] ** 2, norms[j] ** 2
            )
        return matrix


class MinibatchCKAAccumulator(_Accumulator):
    """Minibatch linear CKA: unbiased HSIC averaged over minibatches of frames.

    Frames are shuffled (within each update, with the given generator),
    buffered and cut into minibatches of ``minibatch_size`` frames. For each
    minibatch, the unbiased HSIC of every pair of states is computed from the
    states' Gram matrices; the CKA is ``mean HSIC(i, j) / sqrt(mean HSIC(i, i)
    mean HSIC(j, j))`` (Nguyen et al. 2021). A last partial minibatch is used
    when it has at least half the size (or when it is the only one) and at
    least 4 frames; otherwise its frames are counted in ``dropped_frames``.

    Memory: ``S * minibatch_size^2 * 8`` bytes of Gram matrices for S states.

    Arguments
    ---------
    minibatch_size : int
        Frames per minibatch (>= 4).
    device : str or torch.device
        Where the Gram matrices are computed.
    generator : torch.Generator, optional
        CPU generator for the shuffle (default: one seeded with 0).
    product_dtype : torch.dtype
        Precision of the Gram products (float32 by default, float64 for the
        exact path); see
        :func:`~speechbrain_skill.layer_groups.cka.minibatch_hsic_matrix`.

    Example
    -------
    >>> frames = torch.randn(2, 600, 8, generator=torch.Generator().manual_seed(0))
    >>> acc = MinibatchCKAAccumulator(minibatch_size=200)
    >>> acc.update(frames)
    >>> matrix = acc.compute()
    >>> bool(abs(matrix[0, 1]) < 0.1), round(float(matrix[0, 0]), 6)
    (True, 1.0)
    """

    def __init__(
        self,
        minibatch_size=DEFAULT_MINIBATCH_SIZE,
        device="cpu",
        generator=None,
        product_dtype=None,
    ):
        super().__init__(device)
        self.product_dtype = product_dtype or torch.float32
        if minibatch_size < MIN_HSIC_FRAMES:
            raise ValueError(f"minibatch_size must be >= 4, got {minibatch_size}.")
        self.minibatch_size = int(minibatch_size)
        self.generator = generator or torch.Generator().manual_seed(0)
        self.num_minibatches = 0
        self.dropped_frames = 0
        self._buffer = None
        self._hsic_sum = None

    def update(self, frames):
        """Add frames of shape (num_states, frames, dim)."""
        frames = self._check(frames)
        if frames.shape[1] == 0:
            return
        order = torch.randperm(frames.shape[1], generator=self.generator)
        frames = frames[:, order.to(frames.device)]
        if self._buffer is not None:
            frames = torch.cat([self._buffer, frames], dim=1)
        size = self.minibatch_size
        full = frames.shape[1] // size * size
        for start in range(0, full, size):
            self._add_minibatch(frames[:, start : start + size])
        self._buffer = frames[:, full:].clone()

    def _add_minibatch(self, frames):
        hsic = minibatch_hsic_matrix(frames, self.product_dtype)
        self._hsic_sum = hsic if self._hsic_sum is None else self._hsic_sum + hsic
        self.num_minibatches += 1
        self.num_frames += frames.shape[1]

    def compute(self):
        """Return the (num_states, num_states) CKA matrix as float64 numpy."""
        hsic_sum, count = self._hsic_sum, self.num_minibatches
        rest = 0 if self._buffer is None else self._buffer.shape[1]
        if rest >= MIN_HSIC_FRAMES and (count == 0 or 2 * rest >= self.minibatch_size):
            extra = minibatch_hsic_matrix(self._buffer, self.product_dtype)
            hsic_sum = extra if hsic_sum is None else hsic_sum + extra
            count += 1
        else:
            self.dropped_frames = rest
        if hsic_sum is None:
            raise ValueError(
                f"Not enough frames for the minibatch CKA: {rest} seen, at least "
                f"{MIN_HSIC_FRAMES} needed."
            )
        hsic = (hsic_sum / count).cpu().numpy()
        diagonal = np.diag(hsic).copy()
        bad = diagonal <= 0
        if bad.any():
            logger.warning(
                "States %s have a non-positive HSIC with themselves (constant "
                "features or too few frames); their similarities are NaN.",
                np.flatnonzero(bad).tolist(),
            )
            diagonal[bad] = np.nan
        scale = np.sqrt(diagonal)
        matrix = hsic / np.outer(scale, scale)
        return (matrix + matrix.T) / 2


class CosineAccumulator(_Accumulator):
    """Mean cosine similarity between time-aligned frames of two states.

    Not centred and not rotation invariant: it tells whether two layers put
    the same frame in the same direction, which is what an L1/cosine
    distillation target compares.

    Arguments
    ---------
    device : str or torch.device
        Where the products run.

    Example
    -------
    >>> frames = torch.randn(2, 10, 4, generator=torch.Generator().manual_seed(0))
    >>> acc = CosineAccumulator()
    >>> acc.update(torch.stack([frames[0], -frames[0]]))
    >>> acc.compute().round(6).tolist()
    [[1.0, -1.0], [-1.0, 1.0]]
    """

    def __init__(self, device="cpu"):
        super().__init__(device)
        self._sum = None

    def update(self, frames):
        """Add frames of shape (num_states, frames, dim)."""
        frames = self._check(frames)
        if frames.shape[1] == 0:
            return
        units = torch.nn.functional.normalize(frames.to(torch.float64), dim=2)
        flat = units.transpose(0, 1)  # (frames, states, dim)
        total = torch.einsum("nid,njd->ij", flat, flat)
        self._sum = total if self._sum is None else self._sum + total
        self.num_frames += frames.shape[1]

    def compute(self):
        """Return the (num_states, num_states) mean cosine as float64 numpy."""
        self._require_frames(1)
        matrix = (self._sum / self.num_frames).cpu().numpy()
        return (matrix + matrix.T) / 2


MEASURES = {
    "cka": LinearCKAAccumulator,
    "cka_minibatch": MinibatchCKAAccumulator,
    "cosine": CosineAccumulator,
}


def make_accumulator(measure="cka", device="cpu", seed=0, **options):
    """Create the streaming accumulator of a similarity measure.

    Arguments
    ---------
    measure : str
        One of :data:`MEASURES` (``cka``, ``cka_minibatch``, ``cosine``).
    device : str or torch.device
        Where the accumulation runs.
    seed : int
        Seed of the minibatch shuffle (``cka_minibatch``).
    **options
        Measure options: ``chunk_frames`` (cka), ``product_dtype`` (cka,
        cka_minibatch), ``minibatch_size`` (cka_minibatch).

    Returns
    -------
    object
        With ``update(frames)`` and ``compute()``.

    Example
    -------
    >>> type(make_accumulator("cka_minibatch", minibatch_size=64)).__name__
    'MinibatchCKAAccumulator'
    """
    if measure not in MEASURES:
        raise ValueError(
            f"Unknown similarity measure '{measure}'; choose one of {sorted(MEASURES)}."
        )
    if measure == "cka_minibatch":
        options.setdefault("generator", torch.Generator().manual_seed(seed + 1))
    try:
        return MEASURES[measure](device=device, **options)
    except TypeError as err:
        raise ValueError(
            f"Bad options {sorted(options)} for measure '{measure}': {err}"
        ) from err


def accumulator_memory_bytes(
    num_states,
    dim,
    measure="cka",
    chunk_frames=DEFAULT_CHUNK_FRAMES,
    minibatch_size=DEFAULT_MINIBATCH_SIZE,
):
    """Upper bound of the memory the accumulation itself holds (bytes).

    The teacher's activations for one batch come on top: its output alone is
    ``num_states * batch * frames * dim * 4`` bytes.

    Arguments
    ---------
    num_states : int
        Hidden states compared (L+1).
    dim : int
        Width of the hidden states.
    measure : str
        Measure name.
    chunk_frames : int
        ``cka`` chunk size.
    minibatch_size : int
        ``cka_minibatch`` minibatch size.

    Returns
    -------
    int

    Example
    -------
    >>> round(accumulator_memory_bytes(13, 768) / 1e6)  # WavLM Base+ shape
    593
    """
    if measure == "cka":
        cross = num_states * (num_states + 1) // 2 * dim * dim * 8
        return cross + 2 * num_states * chunk_frames * dim * 8
    if measure == "cka_minibatch":
        grams = num_states * minibatch_size**2 * 8
        return grams + 2 * num_states * minibatch_size * dim * 8
    if measure == "cosine":
        return num_states * num_states * 8
    raise ValueError(f"Unknown similarity measure '{measure}'.")
