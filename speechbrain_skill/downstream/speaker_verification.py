"""Speaker verification on a frozen upstream (SUPERB ASV): x-vector + AM-softmax.

* :class:`XVectorHead`: linear projection, five TDNN layers (contexts 5, 3,
  3, 1, 1 with dilations 1, 2, 3, 1, 1), statistics pooling (mean and
  standard deviation over the real frames) and two linear layers to the
  speaker embedding (s3prl's ``XVector`` + ``SP`` + ``UtteranceExtractor``).
* :class:`AMSoftmaxLoss`: additive-margin softmax on cosine logits
  (SUPERB: scale 30, margin 0.4).
* :class:`SpeakerVerificationBrain`: trains on the training speakers; on the
  validation and test sets it embeds every utterance and scores the stage's
  trial list by cosine similarity: EER (the checkpoint metric) and minDCF.
"""

import speechbrain as sb
import torch

from speechbrain_skill.downstream.brain import DownstreamBrain
from speechbrain_skill.downstream.heads import absolute_lengths, masked_pooling
from speechbrain_skill.downstream.verification_metrics import (
    equal_error_rate,
    min_dcf,
    read_trials,
)

TDNN_LAYERS = ((5, 1), (3, 2), (3, 3), (1, 1), (1, 1))  # (context, dilation)


class XVectorHead(torch.nn.Module):
    """Frame features -> speaker embedding.

    Arguments
    ---------
    input_size : int
        Upstream feature dimension.
    tdnn_size : int
        Width of the projection and the first four TDNN layers (SUPERB 512).
    pooled_size : int
        Width of the last TDNN layer, before pooling (SUPERB 1500).
    embedding_size : int
        Speaker-embedding size (SUPERB 512).

    Example
    -------
    >>> head = XVectorHead(8, tdnn_size=6, pooled_size=10, embedding_size=4)
    >>> head(torch.randn(2, 20, 8), torch.tensor([1.0, 0.5])).shape
    torch.Size([2, 4])
    """

    def __init__(self, input_size, tdnn_size=512, pooled_size=1500, embedding_size=512):
        super().__init__()
        self.projection = torch.nn.Linear(input_size, tdnn_size)
        self.tdnn = torch.nn.ModuleList()
        for index, (context, dilation) in enumerate(TDNN_LAYERS):
            out = pooled_size if index == len(TDNN_LAYERS) - 1 else tdnn_size
            padding = dilation * (context - 1) // 2  # keeps the frame count
            self.tdnn.append(
                torch.nn.Conv1d(
                    tdnn_size, out, context, dilation=dilation, padding=padding
                )
            )
        self.utterance = torch.nn.Sequential(
            torch.nn.Linear(2 * pooled_size, embedding_size),
            torch.nn.ReLU(),
            torch.nn.Linear(embedding_size, embedding_size),
        )

    def forward(self, feats, lens):
        """Embeddings (batch, embedding_size).

        Padding frames are zeroed before every TDNN layer, as the convolution's
        own zero padding past the end: a padded utterance gets the embedding
        it has alone.
        """
        counts = absolute_lengths(lens, feats.shape[1]).to(feats.device)
        frames = torch.arange(feats.shape[1], device=feats.device)
        mask = (frames[None] < counts[:, None]).unsqueeze(1).to(feats.dtype)
        hidden = self.projection(feats).transpose(1, 2) * mask
        for layer in self.tdnn:
            hidden = torch.relu(layer(hidden)) * mask
        return self.utterance(masked_pooling(hidden.transpose(1, 2), lens, "stats"))


class AMSoftmaxLoss(torch.nn.Module):
    """Additive-margin softmax: ``s * (cos(theta_y) - m)`` for the true class.

    Arguments
    ---------
    embedding_size : int
        Embedding dimension.
    num_classes : int
        Training speakers.
    scale, margin : float
        ``s`` and ``m`` (SUPERB: 30, 0.4).

    Example
    -------
    >>> loss = AMSoftmaxLoss(4, 3, scale=1.0, margin=0.0)
    >>> with torch.no_grad():
    ...     _ = loss.weight.copy_(torch.eye(3, 4))
    >>> value = loss(torch.tensor([[1.0, 0, 0, 0]]), torch.tensor([0]))
    >>> round(float(value), 4)  # softmax over cosines (1, 0, 0)
    0.5514
    """

    def __init__(self, embedding_size, num_classes, scale=30.0, margin=0.4):
        super().__init__()
        self.weight = torch.nn.Parameter(
            torch.randn(num_classes, embedding_size) * 0.01
        )
        self.scale = scale
        self.margin = margin

    def forward(self, embeddings, labels):
        """Mean loss of a batch."""
        cosine = torch.nn.functional.normalize(embeddings.float(), dim=-1) @ (
            torch.nn.functional.normalize(self.weight.float(), dim=-1).T
        )
        margin = torch.nn.functional.one_hot(labels, cosine.shape[-1]) * self.margin
        return torch.nn.functional.cross_entropy(self.scale * (cosine - margin), labels)


def score_trials(trials, embeddings):
    """Cosine score of every trial whose two utterances have an embedding.

    Arguments
    ---------
    trials : list of (int, str, str)
        From :func:`~speechbrain_skill.downstream.verification_metrics.read_trials`.
    embeddings : dict
        Utterance id -> 1-D tensor.

    Returns
    -------
    scores : list of float
    labels : list of int
    missing : int
        Trials left out (an utterance was skipped as unusable).

    Example
    -------
    >>> e = {"a": torch.tensor([1.0, 0]), "b": torch.tensor([2.0, 0]),
    ...      "c": torch.tensor([0.0, 1])}
    >>> score_trials([(1, "a", "b"), (0, "a", "c"), (0, "a", "x")], e)
    ([1.0, 0.0], [1, 0], 1)
    """
    scores, labels, missing = [], [], 0
    for label, first, second in trials:
        if first not in embeddings or second not in embeddings:
            missing += 1
            continue
        score = torch.nn.functional.cosine_similarity(
            embeddings[first].float(), embeddings[second].float(), dim=0
        )
        scores.append(round(float(score), 6))
        labels.append(label)
    return scores, labels, missing


def _gather(embeddings):
    """Every process's embeddings (DDP); the dict itself otherwise."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return embeddings
    parts = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(parts, embeddings)
    return {key: value for part in parts for key, value in part.items()}


class SpeakerVerificationBrain(DownstreamBrain):
    """AM-softmax training; EER / minDCF on the trial lists of valid and test.

    Modules: ``upstream``, ``head`` (:class:`XVectorHead`) and ``loss``
    (:class:`AMSoftmaxLoss`). Hyperparameters: ``valid_trials`` and
    ``test_trials`` (trial-list files over the manifests' utterance ids),
    ``p_target``.
    """

    metric = "EER"
    higher_is_better = False

    def silent_batch(self):
        """One second of silence of speaker 0 (zero-loss DDP step)."""
        return super().silent_batch(label_encoded=torch.zeros(1, dtype=torch.long))

    def compute_forward(self, batch, stage):
        """Speaker embeddings (batch, embedding_size)."""
        batch = batch.to(self.device)
        feats, feat_lens = self.upstream_features(batch)
        return self.modules.head(feats, feat_lens)

    def compute_objectives(self, embeddings, batch, stage):
        """AM-softmax loss where speakers are known; keeps eval embeddings."""
        if stage != sb.Stage.TRAIN:
            for utt, embedding in zip(batch.id, embeddings.detach().float().cpu()):
                self.embeddings[utt] = embedding
        if not hasattr(batch, "label_encoded"):  # test speakers are not classes
            return embeddings.sum() * 0.0
        return self.modules.loss(embeddings, batch.label_encoded.data.view(-1))

    def reset_metrics(self, stage):
        """Forget the embeddings of the previous stage."""
        self.embeddings = {}

    def summarize_metrics(self, stage):
        """EER (%), minDCF and the trial counts of the stage's trial list."""
        path = (
            self.hparams.valid_trials
            if stage == sb.Stage.VALID
            else self.hparams.test_trials
        )
        scores, labels, missing = score_trials(
            read_trials(path), _gather(self.embeddings)
        )
        stats = {
            "EER": round(equal_error_rate(scores, labels), 4),
            "minDCF": round(min_dcf(scores, labels, self.hparams.p_target), 4),
            "trials": len(scores),
        }
        if missing:
            stats["trials_missing"] = missing
        return stats
