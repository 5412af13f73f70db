"""Skipping batches of unusable audio inside SpeechBrain Brains, DDP-safe.

The collate function (:class:`~speechbrain_skill.data.dataio.SkipBadAudioCollate`)
drops unreadable examples and lists them in ``batch.skipped``; a batch with no
usable example has length 0. :class:`SkipsUnusableBatches` is the one place
where Brains count those examples and step over empty batches.
"""

import torch

from speechbrain_skill.data.dataio import AudioBatch


class SkipsUnusableBatches:
    """Mixin for ``speechbrain.Brain``: count skipped files, step over empty batches.

    Put it before ``sb.Brain`` in the bases. Skipped examples are counted per
    reason in ``self.skipped`` (override :meth:`record_skipped` to count
    elsewhere). An empty training batch is skipped; under DDP, where every
    process must run the same backward and optimizer step, the process runs one
    second of silence with its loss multiplied by zero instead, so gradients
    are all-reduced and parameters stay identical across processes.

    Example
    -------
    >>> from speechbrain_skill.data.dataio import SkippedBatch
    >>> class Counter(SkipsUnusableBatches):
    ...     pass
    >>> counter = Counter()
    >>> counter.record_skipped(SkippedBatch([("a", "missing"), ("b", "too short (3)")]))
    >>> counter.skipped
    {'missing': 1, 'too short': 1}
    """

    def record_skipped(self, batch):
        """Count the examples the collate function left out of ``batch``."""
        if not hasattr(self, "skipped"):
            self.skipped = {}
        for _, reason in getattr(batch, "skipped", ()):
            key = reason.split(" (")[0]
            self.skipped[key] = self.skipped.get(key, 0) + 1

    def silent_batch(self, **fields):
        """The stand-in batch a DDP process trains on, with zero loss, when empty.

        Brains whose loss reads more than ``sig`` override this and pass the
        extra example fields (e.g. a label) to it.
        """
        example = {"id": "silence", "sig": torch.zeros(16000), **fields}
        return AudioBatch([example])

    def fit_batch(self, batch):
        """Fit one batch; an empty batch is counted and skipped (see class doc)."""
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
        """Evaluate one batch; an empty batch is counted and skipped."""
        self.record_skipped(batch)
        if len(batch) == 0:
            return torch.tensor(0.0)
        return super().evaluate_batch(batch, stage)
