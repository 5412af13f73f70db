"""Layer-to-layer distillation losses, padding-aware (docs/design.md 4.4).

Per target: ``l1_weight * L1 + cos_weight * cosine_term`` where the cosine
term is ``-cos`` (DPHuBERT) or ``-log sigmoid(cos)`` (DistilHuBERT); the loss
is averaged over targets. Padding frames are excluded from both terms (the
reference implementations average over them).

:class:`EnhancementLoss` is RobustDistiller's auxiliary term (enhancement
head), added by the Brains through their ``auxiliary_loss`` hyperparameter.
"""

import torch
import torch.nn.functional as F

from speechbrain_skill.lobes.enhancement import StudentFeatureTap
from speechbrain_skill.lobes.frames import lengths_to_mask
from speechbrain_skill.training.modules import unwrap

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


def frame_cosines(prediction, target):
    """Cosine similarity of every frame, in fp32 (padding included).

    Arguments
    ---------
    prediction, target : torch.Tensor
        (batch, frames, dim).

    Returns
    -------
    torch.Tensor
        (batch, frames).

    Example
    -------
    >>> pred = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    >>> frame_cosines(pred, torch.tensor([[[1.0, 0.0], [1.0, 0.0]]]))
    tensor([[1., 0.]])
    """
    return F.cosine_similarity(prediction.float(), target.float(), dim=-1, eps=1e-8)


def masked_mean(values, mask):
    """Mean of ``values`` over the True entries of ``mask`` (0 if there are none).

    A weighted sum rather than boolean indexing: the result's shape does not
    depend on the mask, so a GPU never waits for the host to learn it.

    Example
    -------
    >>> mask = torch.tensor([[True, True, False]])
    >>> masked_mean(torch.tensor([[1.0, 3.0, 9.0]]), mask)
    tensor(2.)
    """
    weights = mask.to(values.dtype)
    return (values * weights).sum() / weights.sum().clamp(min=1)


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

    def describe(self):
        """The loss in words, for summaries.

        Example
        -------
        >>> DistillationLoss(cos_type="neg_log_sigmoid").describe()
        'mean over targets of L1 + (-log sigmoid(cos))'
        """
        cosine = {"neg_cos": "(-cos)", "neg_log_sigmoid": "(-log sigmoid(cos))"}
        l1 = "L1" if self.l1_weight == 1 else f"{self.l1_weight:g} * L1"
        cos = cosine[self.cos_type]
        cos = cos if self.cos_weight == 1 else f"{self.cos_weight:g} * {cos}"
        return f"mean over targets of {l1} + {cos}"

    def cosine_term(self, cos, mask):
        """The cosine part for per-frame cosines (mean over the real frames)."""
        if self.cos_type == "neg_cos":
            return -masked_mean(cos, mask)
        return -masked_mean(F.logsigmoid(cos), mask)

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
            term) per target, detached scalar tensors (read on the host only
            when logged: no host sync per step).
        """
        total = predictions.new_zeros(())
        parts = {}
        for index, (pred, target) in enumerate(zip(predictions, targets)):
            l1 = masked_l1(pred, target, mask)
            cos = frame_cosines(pred, target)
            total = (
                total
                + self.l1_weight * l1
                + self.cos_weight * self.cosine_term(cos, mask)
            )
            parts[f"l1_{index}"] = l1.detach()
            parts[f"cos_{index}"] = masked_mean(cos.detach(), mask)
        return total / len(predictions), parts


class EnhancementLoss:
    """RobustDistiller's enhancement term, an ``auxiliary_loss`` of the Brains.

    ``weight * L1(mask * |noisy STFT|, |clean STFT|)`` over real STFT frames,
    where the mask comes from the ``enhancement`` module
    (:class:`~speechbrain_skill.lobes.enhancement.EnhancementHead`) reading the
    student's CNN features of its (corrupted) input. The features are taken
    from the student's forward pass by a
    :class:`~speechbrain_skill.lobes.enhancement.StudentFeatureTap`, so the
    gradient of this term reaches the student's CNN at no extra CNN cost.
    The term is also computed in validation, where the student hears clean
    speech (the Brains corrupt training batches only).

    Arguments
    ---------
    weight : float
        Weight of the term in the total loss (RobustDistiller: 2).
    features : str
        ``conv`` or ``projection``: which student features the head reads.
    module_name : str
        Name of the head in the Brain's modules.

    Example
    -------
    >>> from types import SimpleNamespace
    >>> from speechbrain_skill.lobes.enhancement import EnhancementHead
    >>> from speechbrain_skill.lobes.student import PrunableSSLEncoder, StudentConfig
    >>> config = StudentConfig.uniform("hubert", 32, 1, 4, 64, 16)
    >>> modules = SimpleNamespace(student=PrunableSSLEncoder(config),
    ...     enhancement=EnhancementHead(16, hidden_size=8, num_layers=1))
    >>> wavs = torch.randn(2, 16000)
    >>> outputs = {"student_wavs": wavs + 0.1 * torch.randn(2, 16000), "wavs": wavs,
    ...            "wav_lens": torch.tensor([1.0, 0.8])}
    >>> loss, parts = EnhancementLoss(weight=2.0)(modules, outputs, None)
    >>> loss.shape, sorted(parts)
    (torch.Size([]), ['enhancement_loss'])
    """

    def __init__(self, weight=2.0, features="conv", module_name="enhancement"):
        self.weight = float(weight)
        self.module_name = module_name
        self.tap = StudentFeatureTap(features)

    def validate_student(self, student):
        """Fail before training when the head could not follow the student's pruning.

        Arguments
        ---------
        student : PrunableSSLEncoder
            The student as configured (before any training).

        Example
        -------
        >>> from speechbrain_skill.lobes.student import StudentConfig
        >>> from speechbrain_skill.lobes.student import PrunableSSLEncoder as Student
        >>> config = StudentConfig.uniform("hubert", 32, 1, 4, 64, 16, prune_conv=True)
        >>> EnhancementLoss(features="projection").validate_student(Student(config))
        >>> EnhancementLoss(features="conv").validate_student(Student(config))
        Traceback (most recent call last):
        ...
        ValueError: The enhancement head reads the CNN output ...
        """
        if self.tap.source == "conv" and student.config.prune_conv:
            raise ValueError(
                "The enhancement head reads the CNN output (enhancement_features: "
                "conv), whose width changes when conv channels are pruned "
                "(prune_conv: True). Use enhancement_features: projection."
            )

    def __call__(self, modules, outputs, stage):
        """Return ``(weighted loss, {"enhancement_loss": unweighted value})``."""
        student = unwrap(modules.student)
        head = getattr(modules, self.module_name)
        noisy, clean = outputs["student_wavs"], outputs["wavs"]
        features = self.tap.features(student, noisy, outputs["wav_lens"])
        enhanced, frame_lens = head(features, noisy, outputs["wav_lens"])
        target = unwrap(head).magnitude(clean)
        loss = masked_l1(enhanced, target, lengths_to_mask(frame_lens, target.shape[1]))
        return self.weight * loss, {"enhancement_loss": loss.detach()}


def target_fit(parts):
    """Mean cosine similarity and L1 distance to the targets, over all targets.

    Unlike the loss, whose cosine term and weights differ between methods,
    these two figures mean the same for every method: a cosine of 1 and an L1
    of 0 is a perfect fit.

    Arguments
    ---------
    parts : dict
        ``cos_<i>`` and ``l1_<i>`` per target, as returned by
        :class:`DistillationLoss` (floats, or scalar tensors).

    Returns
    -------
    dict
        ``mean_cosine`` and ``mean_l1``.

    Example
    -------
    >>> target_fit({"cos_0": 0.9, "cos_1": 0.7, "l1_0": 0.1, "l1_1": 0.3})
    {'mean_cosine': 0.8, 'mean_l1': 0.2}
    """
    cosines = [value for key, value in parts.items() if key.startswith("cos_")]
    l1s = [value for key, value in parts.items() if key.startswith("l1_")]
    fit = {
        "mean_cosine": sum(cosines) / len(cosines),
        "mean_l1": sum(l1s) / len(l1s),
    }
    # Tensors stay on their device (no host sync); floats are rounded.
    return {k: v if torch.is_tensor(v) else round(v, 6) for k, v in fit.items()}
