"""The masked-prediction head of HuBERT and its loss.

The head projects each output frame to ``final_dim`` and scores it against
one learned embedding per cluster by cosine similarity divided by a
temperature (HuBERT: final_dim 256, temperature 0.1). The head exists only
for pretraining and is dropped at export.
"""

from dataclasses import dataclass

import torch

IGNORE_INDEX = -100


class MaskedPredictionHead(torch.nn.Module):
    """Projection + cluster codebook; frames (B, T, C) -> logits (B, T, K).

    Arguments
    ---------
    input_size : int
        Width of the encoder output.
    num_clusters : int
        Label vocabulary size (k-means clusters).
    final_dim : int
        Projection width.
    temperature : float
        Divides the cosine similarities.

    Example
    -------
    >>> head = MaskedPredictionHead(32, num_clusters=10, final_dim=8)
    >>> head(torch.randn(2, 5, 32)).shape
    torch.Size([2, 5, 10])
    """

    def __init__(self, input_size, num_clusters, final_dim=256, temperature=0.1):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}.")
        self.proj = torch.nn.Linear(input_size, final_dim)
        self.codebook = torch.nn.Parameter(torch.empty(num_clusters, final_dim))
        torch.nn.init.uniform_(self.codebook)
        self.temperature = temperature

    def forward(self, hidden):
        """Logits of every frame for every cluster."""
        projected = torch.nn.functional.normalize(self.proj(hidden), dim=-1)
        codebook = torch.nn.functional.normalize(self.codebook, dim=-1)
        return projected @ codebook.to(projected.dtype).T / self.temperature


@dataclass
class MaskedPredictionStats:
    """Loss and accuracy of one batch.

    Attributes
    ----------
    loss : torch.Tensor
        The training objective (masked CE + weighted unmasked CE).
    masked_loss : torch.Tensor
        Mean CE over masked frames.
    masked_correct : int
        Masked frames whose arg-max is the label.
    num_masked : int
        Masked frames with a label.
    unmasked_correct : int
        Same on the unmasked frames.
    num_unmasked : int
        Unmasked frames with a label.
    """

    loss: torch.Tensor
    masked_loss: torch.Tensor
    masked_correct: int
    num_masked: int
    unmasked_correct: int
    num_unmasked: int


def masked_prediction_loss(logits, labels, mask, valid=None, unmasked_weight=0.0):
    """Cross-entropy on masked frames (HuBERT's objective), plus accuracies.

    Arguments
    ---------
    logits : torch.Tensor
        (B, T, K).
    labels : torch.Tensor
        (B, T) cluster labels; :data:`IGNORE_INDEX` where unknown.
    mask : torch.Tensor
        (B, T) True on masked frames.
    valid : torch.Tensor, optional
        (B, T) True on real frames (padding excluded).
    unmasked_weight : float
        Weight of the CE on unmasked frames (HuBERT Base: 0).

    Returns
    -------
    MaskedPredictionStats

    Example
    -------
    >>> logits = torch.tensor([[[5.0, 0.0], [0.0, 5.0], [5.0, 0.0]]])
    >>> stats = masked_prediction_loss(
    ...     logits, torch.tensor([[0, 1, 1]]), torch.tensor([[True, True, False]]))
    >>> stats.masked_correct, stats.num_masked, stats.unmasked_correct
    (2, 2, 0)
    """
    frames = min(logits.shape[1], labels.shape[1])
    logits, labels, mask = logits[:, :frames], labels[:, :frames], mask[:, :frames]
    known = labels != IGNORE_INDEX
    if valid is not None:
        known = known & valid[:, :frames]
    masked = mask & known
    unmasked = ~mask & known
    logits = logits.float()
    ce = torch.nn.functional.cross_entropy(
        logits.transpose(1, 2), labels.masked_fill(~known, 0), reduction="none"
    )
    masked_loss = (ce * masked).sum() / masked.sum().clamp(min=1)
    loss = masked_loss
    if unmasked_weight:
        loss = loss + unmasked_weight * (ce * unmasked).sum() / unmasked.sum().clamp(
            min=1
        )
    correct = logits.argmax(dim=-1) == labels
    return MaskedPredictionStats(
        loss=loss,
        masked_loss=masked_loss,
        masked_correct=int((correct & masked).sum()),
        num_masked=int(masked.sum()),
        unmasked_correct=int((correct & unmasked).sum()),
        num_unmasked=int(unmasked.sum()),
    )
