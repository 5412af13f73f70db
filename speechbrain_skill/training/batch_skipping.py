"""Skipping batches of unusable audio inside SpeechBrain Brains, DDP-safe.

The collate function (:class:`~speechbrain_skill.data.dataio.SkipBadAudioCollate`)
drops unreadable examples and lists them in ``batch.skipped``; a batch with no
usable example has length 0. :class:`SkipsUnusableBatches` is the one place
where Brains record those examples and step over empty batches.

Skipped files are recorded by utterance id, so a file met again in a later
epoch counts once, and :func:`gather_skipped` merges the records of all DDP
processes (each process sees only its share of the data).
"""

import atexit
import os
import tempfile

import torch
from speechbrain.utils.distributed import ddp_prevent_block

from speechbrain_skill.data.audio import reason_kind
from speechbrain_skill.data.dataio import (
    AudioBatch,
    SkipBadAudioCollate,
    read_skip_records,
)


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
        self._record(getattr(batch, "skipped", ()))

    def _record(self, pairs):
        if not hasattr(self, "skipped"):
            self.skipped = {}
        for utt_id, reason in pairs:
            self.skipped.setdefault(reason_kind(reason), set()).add(str(utt_id))

    def reset_skipped(self):
        """Forget the skipped files recorded so far (e.g. at a stage start)."""
        self.skipped = {}
        if getattr(self, "_skip_records", None):
            open(self._skip_records, "w").close()

    def make_dataloader(self, dataset, stage, *args, **loader_kwargs):
        """SpeechBrain's loader, its bad-audio collate recording into a file.

        The loader collates batches that never reach ``fit_batch`` (the batch
        fetched when the step limit is reached, workers' prefetch); the file
        lets :meth:`sync_skipped` count the files skipped there too.
        """
        loader = super().make_dataloader(dataset, stage, *args, **loader_kwargs)
        collate = getattr(loader, "collate_fn", None)
        if isinstance(collate, SkipBadAudioCollate):
            collate.record_path = self._skip_record_path()
        return loader

    def _skip_record_path(self):
        if getattr(self, "_skip_records", None) is None:
            handle, path = tempfile.mkstemp(prefix="skipped-", suffix=".tsv")
            os.close(handle)
            atexit.register(lambda: os.path.exists(path) and os.remove(path))
            self._skip_records = path
        return self._skip_records

    def sync_skipped(self):
        """Merge the records of all DDP processes into ``self.skipped`` (collective).

        Files seen bad in batches that were collated but not consumed count too.

        Returns
        -------
        dict
            Reason -> sorted list of distinct utterance ids.
        """
        self._record(read_skip_records(getattr(self, "_skip_records", None)))
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
