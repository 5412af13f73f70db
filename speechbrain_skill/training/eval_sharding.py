"""Validation shared between DDP processes instead of repeated on each.

SpeechBrain gives only the training loader a distributed sampler: under
``torchrun`` every process runs the whole validation set and reports the
same figures. :class:`EvalShardSampler` gives each process every
``world_size``-th utterance (each utterance exactly once: no padding
duplicates, unlike ``DistributedSampler``), and
:func:`all_reduce_eval_stats` combines the per-process results into the
figures of the whole set, batch-weighted as on a single process.
"""

import torch
from torch.utils.data import IterableDataset, Sampler


class EvalShardSampler(Sampler):
    """Indices ``rank``, ``rank + world_size`` and so on of a dataset, in order.

    Arguments
    ---------
    num_items : int
        Dataset length.
    rank, world_size : int
        This process and the number of processes.

    Example
    -------
    >>> list(EvalShardSampler(7, rank=1, world_size=3))
    [1, 4]
    """

    def __init__(self, num_items, rank, world_size):
        super().__init__()
        self.indices = list(range(rank, num_items, world_size))

    def __iter__(self):
        return iter(self.indices)

    def __len__(self):
        return len(self.indices)


def shard_eval_loader_kwargs(dataset, loader_kwargs, rank=None, world_size=None):
    """Loader options that make a process read only its share of an eval set.

    Left unchanged outside DDP, for iterable datasets, when the options
    already choose the order (``sampler``, ``batch_sampler``, ``shuffle``),
    and when the set has fewer utterances than processes (each process
    needs one batch at least: DDP's first evaluation forward broadcasts
    buffers).

    Arguments
    ---------
    dataset : torch.utils.data.Dataset
        The validation or test set.
    loader_kwargs : dict
        Its loader options.
    rank, world_size : int, optional
        Default: those of the initialised process group.

    Returns
    -------
    dict

    Example
    -------
    >>> options = shard_eval_loader_kwargs(range(10), {"batch_size": 2}, 0, 4)
    >>> len(options["sampler"]), options["batch_size"]
    (3, 2)
    >>> shard_eval_loader_kwargs(range(10), {"batch_size": 2})
    {'batch_size': 2}
    """
    if world_size is None:
        distributed = torch.distributed.is_available() and (
            torch.distributed.is_initialized()
        )
        if not distributed:
            return dict(loader_kwargs)
        rank, world_size = (
            torch.distributed.get_rank(),
            torch.distributed.get_world_size(),
        )
    ordered = {"sampler", "batch_sampler", "shuffle"} & set(loader_kwargs)
    if (
        world_size < 2
        or ordered
        or isinstance(dataset, IterableDataset)
        or len(dataset) < world_size
    ):
        return dict(loader_kwargs)
    return {
        **loader_kwargs,
        "sampler": EvalShardSampler(len(dataset), rank, world_size),
    }


def all_reduce_eval_stats(stage_loss, batches, sums, device="cpu"):
    """Whole-set figures from each process's share (a collective under DDP).

    Arguments
    ---------
    stage_loss : float
        This process's mean loss over its ``batches``.
    batches : int
        Batches this process evaluated.
    sums : dict
        Per-batch statistics summed over this process's batches.
    device : str or torch.device
        Device of the reduction (that of the process group's backend).

    Returns
    -------
    stage_loss : float
        Mean loss over all batches of all processes.
    batches : int
        All batches.
    sums : dict
        The sums over all processes, as floats.

    Example
    -------
    >>> all_reduce_eval_stats(2.0, 3, {"mean_l1": 1.5})  # one process
    (2.0, 3, {'mean_l1': 1.5})
    """
    keys = sorted(sums)
    values = [float(stage_loss) * batches, float(batches)]
    values += [float(sums[key]) for key in keys]
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        totals = torch.tensor(values, dtype=torch.float64, device=device)
        torch.distributed.all_reduce(totals)
        values = totals.tolist()
    total_batches = int(round(values[1]))
    loss = values[0] / values[1] if values[1] else float(stage_loss)
    return loss, total_batches, dict(zip(keys, values[2:]))
