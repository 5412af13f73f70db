"""The expected-sparsity Lagrangian of DPHuBERT-style pruning (docs/design.md 4.2).

``penalty = lambda1 * (s_hat - t) + lambda2 * (s_hat - t) ** 2`` where ``s_hat``
is the student's differentiable expected sparsity and the target ``t`` rises
linearly from 0 to ``target_sparsity`` over ``warmup_steps``. The multipliers
start at 0 and are trained by gradient ASCENT (their optimizer has
``maximize=True``), the gates by descent: a min-max game that settles at the
target.
"""

import torch


def validate_target_sparsity(target_sparsity):
    """Raise a clear error unless 0 < target_sparsity < 1.

    Example
    -------
    >>> validate_target_sparsity(0.75)
    0.75
    >>> validate_target_sparsity(1.0)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: target_sparsity must be in (0, 1) (fraction of parameters ...
    """
    value = float(target_sparsity)
    if not 0.0 < value < 1.0:
        raise ValueError(
            "target_sparsity must be in (0, 1) (fraction of parameters removed), "
            f"got {target_sparsity}."
        )
    return value


class SparsityLagrangian(torch.nn.Module):
    """Lagrange multipliers and the linear target-sparsity warmup.

    Arguments
    ---------
    target_sparsity : float
        Final fraction of parameters to remove, in (0, 1).
    warmup_steps : int
        Optimizer steps over which the target rises linearly from 0.

    Example
    -------
    >>> lagrangian = SparsityLagrangian(0.5, warmup_steps=10)
    >>> lagrangian.target_at(5)
    0.25
    >>> penalty, target = lagrangian(torch.tensor(0.1), step=20)
    >>> float(penalty), target
    (0.0, 0.5)
    """

    def __init__(self, target_sparsity, warmup_steps):
        super().__init__()
        self.target_sparsity = validate_target_sparsity(target_sparsity)
        if int(warmup_steps) < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}.")
        self.warmup_steps = int(warmup_steps)
        self.lambda1 = torch.nn.Parameter(torch.zeros(()))
        self.lambda2 = torch.nn.Parameter(torch.zeros(()))

    def target_at(self, step):
        """Target sparsity after ``step`` optimizer steps."""
        if self.warmup_steps == 0:
            return self.target_sparsity
        return self.target_sparsity * min(1.0, step / self.warmup_steps)

    def forward(self, expected_sparsity, step):
        """Return (penalty, target) for the current expected sparsity and step."""
        target = self.target_at(step)
        gap = expected_sparsity - target
        return self.lambda1 * gap + self.lambda2 * gap * gap, target
