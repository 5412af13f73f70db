"""Utterance classification on a frozen upstream: keyword spotting, speaker ID.

The two tasks differ only by their labels and head settings (pooling), so
one Brain serves both.

Modules: ``upstream`` (:class:`~speechbrain_skill.lobes.upstream.SSLUpstream`)
and ``head`` (e.g. :class:`~speechbrain_skill.downstream.heads.PooledClassifier`).
Batches carry ``sig`` and ``label_encoded``.
"""

import speechbrain as sb
import torch

from speechbrain_skill.downstream.brain import DownstreamBrain


class UtteranceClassificationBrain(DownstreamBrain):
    """Negative log-likelihood training, accuracy (%) as the metric.

    Example
    -------
    >>> import tempfile
    >>> from speechbrain_skill.downstream.heads import PooledClassifier
    >>> from speechbrain_skill.lobes.tiny_models import save_tiny_model
    >>> from speechbrain_skill.lobes.upstream import SSLUpstream
    >>> upstream = SSLUpstream(save_tiny_model(tempfile.mkdtemp()))
    >>> brain = UtteranceClassificationBrain(
    ...     modules={"upstream": upstream, "head": PooledClassifier(32, 3, 8)},
    ...     opt_class=lambda params: torch.optim.Adam(params, 1e-3),
    ... )
    >>> brain.accuracy_counts(torch.log(torch.tensor([[0.9, 0.1], [0.2, 0.8]])),
    ...                       torch.tensor([0, 0]))
    (1, 2)
    """

    metric = "accuracy"
    higher_is_better = True

    def silent_batch(self):
        """One second of silence labelled with class 0 (zero-loss DDP step)."""
        return super().silent_batch(label_encoded=torch.zeros(1, dtype=torch.long))

    def compute_forward(self, batch, stage):
        """Log-probabilities (batch, num_classes)."""
        batch = batch.to(self.device)
        feats, feat_lens = self.upstream_features(batch)
        return self.modules.head(feats, feat_lens)

    def compute_objectives(self, predictions, batch, stage):
        """NLL loss; accuracy counts outside training."""
        labels = batch.label_encoded.data.view(-1)
        loss = torch.nn.functional.nll_loss(predictions.float(), labels)
        if stage != sb.Stage.TRAIN:
            correct, total = self.accuracy_counts(predictions, labels)
            self.correct += correct
            self.total += total
        return loss

    @staticmethod
    def accuracy_counts(predictions, labels):
        """(number correct, number of utterances) of a batch."""
        hits = predictions.argmax(dim=-1) == labels
        return int(hits.sum()), int(hits.numel())

    def reset_metrics(self, stage):
        """Zero the accuracy counters."""
        self.correct = 0
        self.total = 0

    def summarize_metrics(self, stage):
        """Accuracy in percent and the number of utterances."""
        accuracy = 100.0 * self.correct / self.total if self.total else float("nan")
        return {"accuracy": round(accuracy, 4), "utterances": self.total}
