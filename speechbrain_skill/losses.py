"""Layer-to-layer distillation losses, padding-aware (DESIGN 4.4).

Per target: ``l1_weight * L1 + cos_weight * cosine_term`` where the cosine
term is ``-cos`` (DPHuBERT) or ``-log sigmoid(cos)`` (DistilHuBERT); the loss
is averaged over targets. Padding frames are excluded from both terms (the
reference implementations average over them).
"""

import torch
import torch.nn.functional as F

COSINE_TERMS = ("neg_cos", "neg_log_sigmoid")


def masked_l1(prediction, target, mask):
    """Mean absolute error over real frames and feature dimensions.

    Arguments
    ---------
    prediction, target : torch.Tensor
        (batch, frames, dim).
    mask : torch.Tensor
        Boolean (batch, frames), True on real frames.

    Returns
    -------
    torch.Tensor
        Scalar.

    Example
    -------
    >>> pred = torch.zeros(1, 3, 2)
    >>> target = torch.tensor([[[1.0, 1.0], [2.0, 2.0], [9.0, 9.0]]])
    >>> masked_l1(pred, target, torch.tensor([[True, True, False]]))
    tensor(1.5000)
    """
    weights = mask.unsqueeze(-1).to(prediction.dtype)
    total = ((prediction - target).abs() * weights).sum()
    return total / (weights.sum() * prediction.shape[-1]).clamp(min=1)


def masked_cosine(prediction, target, mask):
    """Per-frame cosine similarity of real frames, flattened to a vector.

    Arguments
    ---------
    prediction, target : torch.Tensor
        (batch, frames, dim).
    mask : torch.Tensor
        Boolean (batch, frames).

    Returns
    -------
    torch.Tensor
        (num_real_frames,).

    Example
    -------
    >>> pred = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    >>> masked_cosine(pred, pred, torch.tensor([[True, False]]))
    tensor([1.])
    """
    cos = F.cosine_similarity(prediction.float(), target.float(), dim=-1, eps=1e-8)
    return cos[mask]


class DistillationLoss(torch.nn.Module):
    """L1 + cosine distillation loss averaged over targets, padding excluded.

    Arguments
    ---------
    l1_weight : float
        Weight of the L1 term.
    cos_weight : float
        Weight of the cosine term.
    cos_type : str
        ``neg_cos`` (DPHuBERT: ``-cos``) or ``neg_log_sigmoid``
        (DistilHuBERT: ``-log sigmoid(cos)``).

    Example
    -------
    >>> loss_fn = DistillationLoss(cos_type="neg_cos")
    >>> x = torch.randn(2, 1, 5, 4)
    >>> mask = torch.ones(1, 5, dtype=torch.bool)
    >>> total, parts = loss_fn(x, x, mask)
    >>> round(float(total), 4), sorted(parts)
    (-1.0, ['cos_0', 'cos_1', 'l1_0', 'l1_1'])
    """

    def __init__(self, l1_weight=1.0, cos_weight=1.0, cos_type="neg_cos"):
        super().__init__()
        if cos_type not in COSINE_TERMS:
            raise ValueError(
                f"cos_type must be one of {COSINE_TERMS}, got '{cos_type}'."
            )
        self.l1_weight = l1_weight
        self.cos_weight = cos_weight
        self.cos_type = cos_type

    def cosine_term(self, cos):
        """The cosine part for a vector of per-frame cosines (mean over frames)."""
        if self.cos_type == "neg_cos":
            return -cos.mean()
        return -F.logsigmoid(cos).mean()

    def forward(self, predictions, targets, mask):
        """Compute the loss.

        Arguments
        ---------
        predictions, targets : torch.Tensor
            (num_targets, batch, frames, dim), already time-aligned.
        mask : torch.Tensor
            Boolean (batch, frames), True on real frames.

        Returns
        -------
        total : torch.Tensor
            Scalar loss.
        parts : dict
            ``l1_<i>`` and ``cos_<i>`` (mean cosine similarity, not the loss
            term) per target, detached floats for logging.
        """
        total = predictions.new_zeros(())
        parts = {}
        for index, (pred, target) in enumerate(zip(predictions, targets)):
            l1 = masked_l1(pred, target, mask)
            cos = masked_cosine(pred, target, mask)
            total = (
                total + self.l1_weight * l1 + self.cos_weight * self.cosine_term(cos)
            )
            parts[f"l1_{index}"] = float(l1.detach())
            parts[f"cos_{index}"] = float(cos.detach().mean())
        return total / len(predictions), parts
