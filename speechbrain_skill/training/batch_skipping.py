"""Skipping batches of unusable audio inside SpeechBrain Brains, DDP-safe.

The collate function (:class:`~speechbrain_skill.data.dataio.SkipBadAudioCollate`)
drops unreadable examples and lists them in ``batch.skipped``; a batch with no
usable example has length 0. :class:`SkipsUnusableBatches` is the one place
where Brains record those examples and step over empty batches.

Skipped files are recorded by utterance id, so a file met again in a later
epoch counts once, and :func:`gather_skipped` merges the records of all DDP
processes (each process sees only its share of the data).
"""

import torch
from speechbrain.utils.distributed import ddp_prevent_block

from speechbrain_skill.data.audio import reason_kind
from speechbrain_skill.data.dataio import AudioBatch


def gather_skipped(skipped):
    """Union of the skipped files of every DDP process (all processes must call it).

    Arguments
    ---------
    skipped : dict
        Reason -> collection of utterance ids, on this process.

    Returns
    -------
    dict
        Reason -> sorted list of distinct ids, the same on every process.

    Example
    -------
    >>> gather_skipped({"missing": {"b", "a"}})
    {'missing': ['a', 'b']}
    """
    parts = [skipped]
    if not ddp_prevent_block():
        parts = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(parts, skipped)
    return merge_skipped(*parts)


def merge_skipped(*records):
    """Union of skipped-file records (reason -> ids).

    Example
    -------
    >>> merge_skipped({"missing": ["a"]}, {"missing": ["a", "b"], "empty": ["c"]})
    {'empty': ['c'], 'missing': ['a', 'b']}
    """
    merged = {}
    for record in records:
        for reason, ids in (record or {}).items():
            merged.setdefault(reason, set()).update(ids)
    return {reason: sorted(ids) for reason, ids in sorted(merged.items())}


def count_skipped(skipped):
    """Number of distinct files per reason.

    Example
    -------
    >>> count_skipped({"missing": ["a", "b"], "empty": ["c"]})
    {'missing': 2, 'empty': 1}
    """
    return {reason: len(set(ids)) for reason, ids in skipped.items()}


class SkipsUnusableBatches:
    """Mixin for ``speechbrain.Brain``: record skipped files, step over empty batches.

    Put it before ``sb.Brain`` in the bases. Skipped examples are recorded per
    reason in ``self.skipped`` (reason -> set of utterance ids). An empty
    training batch is skipped; under DDP, where every process must run the
    same backward and optimizer step, the process runs one second of silence
    with its loss multiplied by zero instead, so gradients are all-reduced and
    parameters stay identical across processes.

    Example
    -------
    >>> from speechbrain_skill.data.dataio import SkippedBatch
    >>> class Counter(SkipsUnusableBatches):
    ...     pass
    >>> counter = Counter()
    >>> counter.record_skipped(SkippedBatch([("a", "missing"), ("b", "too short (3)")]))
    >>> counter.record_skipped(SkippedBatch([("a", "missing")]))  # next epoch
    >>> count_skipped(counter.sync_skipped())
    {'missing': 1, 'too short': 1}
    """

    def record_skipped(self, batch):
        """Record the examples the collate function left out of ``batch``."""
        if not hasattr(self, "skipped"):
            self.skipped = {}
        for utt_id, reason in getattr(batch, "skipped", ()):
            self.skipped.setdefault(reason_kind(reason), set()).add(str(utt_id))

    def sync_skipped(self):
        """Merge the records of all DDP processes into ``self.skipped`` (collective).

        Returns
        -------
        dict
            Reason -> sorted list of distinct utterance ids.
        """
        merged = gather_skipped(getattr(self, "skipped", {}))
        self.skipped = {reason: set(ids) for reason, ids in merged.items()}
        return merged

    def silent_batch(self, **fields):
        """The stand-in batch a DDP process trains on, with zero loss, when empty.

        Brains whose loss reads more than ``sig`` override this and pass the
        extra example fields (e.g. a label) to it.
        """
        example = {"id": "silence", "sig": torch.zeros(16000), **fields}
        return AudioBatch([example])

    def fit_batch(self, batch):
        """Fit one batch; an empty batch is recorded and skipped (see class doc)."""
        self.record_skipped(batch)
        if len(batch) > 0:
            return super().fit_batch(batch)
        if self.distributed_launch:
            compute_objectives = self.compute_objectives
            self.compute_objectives = lambda *args, **kwargs: (
                compute_objectives(*args, **kwargs) * 0.0
            )
            try:
                super().fit_batch(self.silent_batch())
            finally:
                del self.compute_objectives
        return torch.tensor(float(self.avg_train_loss))

    def evaluate_batch(self, batch, stage):
        """Evaluate one batch; an empty batch is recorded and skipped."""
        self.record_skipped(batch)
        if len(batch) == 0:
            return torch.tensor(0.0)
        return super().evaluate_batch(batch, stage)

    def _save_intra_epoch_ckpt(self):
        """Merge the skipped-file records of all processes into the checkpoint."""
        self.sync_skipped()
        super()._save_intra_epoch_ckpt()
