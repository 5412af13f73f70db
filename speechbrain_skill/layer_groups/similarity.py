"""Layer similarity of a frozen SSL teacher over a calibration set (the driver).

:func:`compute_layer_similarity` runs the teacher batch by batch and feeds all
its hidden states, padding frames excluded, to a similarity accumulator
(:mod:`~speechbrain_skill.layer_groups.accumulators`, default linear CKA); the
maths lives in :mod:`~speechbrain_skill.layer_groups.cka`.
"""

import logging
import os
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch

from speechbrain_skill.layer_groups.accumulators import (
    make_accumulator,
    select_frames,
)

logger = logging.getLogger(__name__)


@dataclass
class SimilarityStats:
    """What a similarity computation saw.

    Attributes
    ----------
    num_batches : int
        Batches read.
    num_utterances : int
        Utterances with at least one frame.
    num_frames : int
        Real (non-padding) frames produced by the teacher.
    num_frames_used : int
        Frames that entered the measure (after subsampling).
    seconds : float
        Wall-clock time.

    Example
    -------
    >>> SimilarityStats(num_utterances=2, num_frames=98).num_frames_used
    0
    """

    num_batches: int = 0
    num_utterances: int = 0
    num_frames: int = 0
    num_frames_used: int = 0
    seconds: float = 0.0


def unpack_batch(batch):
    """Return ``(wavs, wav_lens)`` from a PaddedBatch, dict, pair or tensor.

    Arguments
    ---------
    batch : object
        A SpeechBrain ``PaddedBatch`` with a ``sig`` key, a dict with ``sig``,
        a ``(wavs, wav_lens)`` pair, or a bare (batch, time) tensor.

    Returns
    -------
    tuple
        ``(wavs, wav_lens)`` with relative lengths (ones when unknown).

    Example
    -------
    >>> wavs, lens = unpack_batch(torch.zeros(2, 100))
    >>> lens.tolist()
    [1.0, 1.0]
    """
    if hasattr(batch, "sig"):
        batch = batch.sig
    elif isinstance(batch, dict):
        batch = batch["sig"]
    if isinstance(batch, torch.Tensor):
        return batch, torch.ones(batch.shape[0])
    wavs, wav_lens = batch
    if wav_lens is None:
        wav_lens = torch.ones(wavs.shape[0])
    return wavs, wav_lens


def as_teacher(teacher):
    """Wrap a source or a Hugging Face model as a :class:`FrozenSSLTeacher`.

    Callables that already return ``(hidden, frame_lens)`` pass through.

    Arguments
    ---------
    teacher : str, os.PathLike, transformers.PreTrainedModel or callable
        Hub id, local directory, ``builtin:<name>``, a loaded model, or a
        teacher.

    Returns
    -------
    callable

    Example
    -------
    >>> import tempfile
    >>> from speechbrain_skill.lobes.tiny_models import save_tiny_model
    >>> as_teacher(save_tiny_model(tempfile.mkdtemp())).num_hidden_states
    5
    """
    from speechbrain_skill.lobes.teacher import FrozenSSLTeacher

    if isinstance(teacher, (str, os.PathLike)):
        return FrozenSSLTeacher(teacher)
    # A loaded Hugging Face model implies transformers is imported already;
    # looking it up in sys.modules avoids a slow import for other callables.
    transformers = sys.modules.get("transformers")
    if transformers is not None and isinstance(teacher, transformers.PreTrainedModel):
        return FrozenSSLTeacher(teacher)
    return teacher


def _progress(batches, enabled):
    if not enabled:
        return batches
    from tqdm import tqdm

    total = len(batches) if hasattr(batches, "__len__") else None
    return tqdm(batches, total=total, desc="Layer similarity", unit="batch")


def compute_layer_similarity(
    teacher,
    batches,
    measure="cka",
    max_frames_per_utterance=None,
    seed=0,
    device="cpu",
    progress=True,
    return_stats=False,
    hidden_state_zero=None,
    **measure_options,
):
    """Similarity matrix of all hidden states of a frozen teacher over a set of audio.

    Arguments
    ---------
    teacher : str, transformers.PreTrainedModel or callable
        A :class:`~speechbrain_skill.lobes.teacher.FrozenSSLTeacher`, any
        callable ``(wavs, wav_lens) -> (hidden, frame_lens)`` with hidden of
        shape (L+1, batch, frames, dim), or a source it can be built from.
        A torch module is moved to ``device``.
    batches : iterable
        Batches of audio: SpeechBrain ``PaddedBatch`` objects with ``sig``,
        ``(wavs, wav_lens)`` pairs with relative lengths, or tensors.
    measure : str
        ``cka`` (default), ``cka_minibatch`` or ``cosine``.
    max_frames_per_utterance : int, optional
        Random subset of frames kept per utterance (reproducible with seed).
    seed : int
        Seed of the frame subsampling and minibatch shuffle.
    device : str or torch.device
        Device of the teacher and of the accumulation.
    progress : bool
        Show a progress bar.
    return_stats : bool
        Also return a :class:`SimilarityStats`.
    hidden_state_zero : str, optional
        Convention of hidden state 0 (row 0 of the matrix): ``projection``
        (DPHuBERT reference) or ``transformer_input`` (Hugging Face); passed
        to the teacher call. None: the teacher's own.
    **measure_options
        Passed to the measure (see
        :func:`~speechbrain_skill.layer_groups.accumulators.make_accumulator`).

    Returns
    -------
    numpy.ndarray
        (L+1, L+1) float64 symmetric matrix; with ``return_stats`` a pair
        ``(matrix, stats)``.

    Example
    -------
    >>> import tempfile
    >>> from speechbrain_skill.lobes.tiny_models import save_tiny_model
    >>> teacher = save_tiny_model(tempfile.mkdtemp())
    >>> wavs = torch.randn(2, 16000, generator=torch.Generator().manual_seed(0))
    >>> batches = [(wavs, torch.tensor([1.0, 0.6]))]
    >>> sim = compute_layer_similarity(teacher, batches, progress=False)
    >>> sim.shape, bool(np.allclose(sim, sim.T))
    ((5, 5), True)
    """
    accumulator = make_accumulator(measure, device=device, seed=seed, **measure_options)
    teacher = as_teacher(teacher)
    if isinstance(teacher, torch.nn.Module):
        teacher = teacher.to(device)
    generator = torch.Generator().manual_seed(seed)
    stats = SimilarityStats()
    start = time.perf_counter()
    bar = _progress(batches, progress)
    with torch.inference_mode():
        for batch in bar:
            wavs, wav_lens = unpack_batch(batch)
            convention = {}
            if hidden_state_zero is not None:
                convention["hidden_state_zero"] = hidden_state_zero
            hidden, frame_lens = teacher(
                wavs.to(device), wav_lens.to(device), **convention
            )
            frames = select_frames(
                hidden, frame_lens, max_frames_per_utterance, generator
            )
            accumulator.update(frames)
            stats.num_batches += 1
            stats.num_utterances += int((frame_lens > 0).sum())
            stats.num_frames += int(frame_lens.clamp(max=hidden.shape[2]).sum())
            stats.num_frames_used += frames.shape[1]
            if progress:
                bar.set_postfix(utts=stats.num_utterances, frames=stats.num_frames_used)
    if stats.num_frames_used == 0:
        raise ValueError(
            f"No frames to compare: {stats.num_batches} batches gave no real frames "
            "(empty calibration set, or all utterances shorter than one frame)."
        )
    matrix = accumulator.compute()
    stats.seconds = time.perf_counter() - start
    undefined = np.flatnonzero(np.isnan(np.diag(matrix)))
    if undefined.size:
        logger.warning(
            "Hidden states %s are constant over all frames: their similarity is "
            "undefined (NaN).",
            undefined.tolist(),
        )
    logger.info(
        "Layer similarity (%s): %d utterances, %d frames used, %.1f s.",
        measure,
        stats.num_utterances,
        stats.num_frames_used,
        stats.seconds,
    )
    return (matrix, stats) if return_stats else matrix
