"""Hard-concrete gates for L0 structured pruning (Louizos et al., 2018).

A gate holds one ``log_alpha`` per prunable unit (a conv channel, a head, an
FFN unit, or a whole block). In training mode it returns a random sample
``z`` in [0, 1] (exactly 0 or 1 with non-zero probability), in eval mode a
deterministic mask.
"""

import math

import torch

from speechbrain_skill.lobes.student.active_units import active_units

TEMPERATURE = 2.0 / 3.0
STRETCH_LOW = -0.1
STRETCH_HIGH = 1.1


class HardConcreteGate(torch.nn.Module):
    """A vector of hard-concrete gates.

    Training: ``u ~ U(eps, 1 - eps)``,
    ``s = sigmoid((log u - log(1 - u) + log_alpha) / beta)``,
    ``z = clamp(s * (r - l) + l, 0, 1)``; one sample per call, shared by the
    whole batch.

    Eval (deterministic, the DPHuBERT reference rule): with
    ``num_zeros = round(n - sum of keep probabilities)`` (Python's ``round``,
    half to even, as the reference), the ``num_zeros`` smallest of the soft
    values ``sigmoid(log_alpha / beta * 0.8)`` are set to exactly 0 and the
    others keep their soft value (folded into the weights when the model is
    materialised). Exactly ``n - num_zeros`` units are kept, so the
    materialised size follows the expected size.

    Arguments
    ---------
    num_units : int
        Number of gated units.
    init_drop_rate : float
        ``m`` of the initialisation ``log_alpha ~ N(log((1 - m) / m), 0.01)``.
    temperature : float
        ``beta``.
    stretch : tuple of float
        The stretch interval ``(l, r)``.
    eps : float
        Keeps the uniform noise away from 0 and 1.

    Example
    -------
    >>> gate = HardConcreteGate(8, init_drop_rate=0.01)
    >>> z = gate.train()()
    >>> z.shape, bool(((z >= 0) & (z <= 1)).all())
    (torch.Size([8]), True)
    >>> gate.eval().num_kept()
    8
    """

    def __init__(
        self,
        num_units,
        init_drop_rate=0.5,
        temperature=TEMPERATURE,
        stretch=(STRETCH_LOW, STRETCH_HIGH),
        eps=1e-6,
    ):
        super().__init__()
        if num_units < 1:
            raise ValueError("A gate needs at least one unit.")
        self.num_units = int(num_units)
        self.init_drop_rate = float(init_drop_rate)
        self.temperature = float(temperature)
        self.low, self.high = (float(v) for v in stretch)
        self.eps = float(eps)
        self.log_alpha = torch.nn.Parameter(torch.empty(self.num_units))
        # (value, kept units) set by active_units.planned_gates for one pass.
        self.planned = None
        self.reset_parameters()

    def reset_parameters(self):
        """Draw ``log_alpha`` from N(log((1 - m) / m), 0.01)."""
        mean = math.log(1.0 - self.init_drop_rate) - math.log(self.init_drop_rate)
        with torch.no_grad():
            self.log_alpha.normal_(mean, 0.01)

    def extra_repr(self):
        """Short description shown by ``print(module)``."""
        return f"num_units={self.num_units}, init_drop_rate={self.init_drop_rate}"

    def keep_probability(self):
        """Probability that each gate is non-zero: sigmoid(log_alpha - beta log(-l/r)).

        Returns
        -------
        torch.Tensor
            Differentiable, shape (num_units,).

        Example
        -------
        >>> gate = HardConcreteGate(2)
        >>> with torch.no_grad():
        ...     _ = gate.log_alpha.fill_(100.0)
        >>> gate.keep_probability().tolist()
        [1.0, 1.0]
        """
        shift = self.temperature * math.log(-self.low / self.high)
        return torch.sigmoid(self.log_alpha - shift)

    def expected_num_kept(self):
        """Expected L0 norm: the sum of the keep probabilities (differentiable).

        Returns
        -------
        torch.Tensor
            Scalar.

        Example
        -------
        >>> round(HardConcreteGate(10, init_drop_rate=0.01).expected_num_kept().item())
        10
        """
        return self.keep_probability().sum()

    def num_kept(self):
        """Number of units the deterministic mask keeps: ``n - round(n - L0)``.

        Returns
        -------
        int

        Example
        -------
        >>> HardConcreteGate(4, init_drop_rate=0.01).num_kept()
        4
        """
        expected_zeros = self.num_units - float(self.expected_num_kept().detach())
        return self.num_units - round(expected_zeros)

    def sample(self, uniform=None):
        """One stochastic sample ``z`` (differentiable w.r.t. ``log_alpha``).

        Arguments
        ---------
        uniform : torch.Tensor, optional
            The noise ``u`` in (eps, 1 - eps), shape (num_units,); drawn when
            not given (fixed noise serves tests and the reference comparison).

        Returns
        -------
        torch.Tensor
            Shape (num_units,), values in [0, 1].

        Example
        -------
        >>> HardConcreteGate(3).sample().shape
        torch.Size([3])
        """
        if uniform is None:
            uniform = torch.rand_like(self.log_alpha)
            uniform = self.eps + (1.0 - 2.0 * self.eps) * uniform
        logits = torch.log(uniform) - torch.log1p(-uniform) + self.log_alpha
        stretched = torch.sigmoid(logits / self.temperature)
        stretched = stretched * (self.high - self.low) + self.low
        return stretched.clamp(0.0, 1.0)

    def deterministic_mask(self):
        """The eval-mode mask (see the class docstring for the rule).

        Returns
        -------
        torch.Tensor
            Shape (num_units,), exact zeros on pruned units.

        Example
        -------
        >>> gate = HardConcreteGate(4)
        >>> with torch.no_grad():
        ...     _ = gate.log_alpha.copy_(torch.tensor([30.0, -30.0, 30.0, -30.0]))
        >>> gate.deterministic_mask().tolist()
        [1.0, 0.0, 1.0, 0.0]
        """
        # 0.8: the reference's empirical correction of the soft value.
        soft = torch.sigmoid(self.log_alpha.detach() / self.temperature * 0.8)
        num_zeros = self.num_units - self.num_kept()
        dropped = torch.topk(soft, num_zeros, largest=False).indices
        return soft.index_fill(0, dropped, 0.0)

    def forward(self):
        """A sample in training mode, the deterministic mask in eval mode.

        Returns
        -------
        torch.Tensor
            Shape (num_units,).
        """
        if self.planned is not None:
            return self.planned[0]
        if self.training:
            return self.sample()
        return self.deterministic_mask()

    def value_and_units(self, units=True):
        """The gate value and its non-zero units, planned or computed now.

        Arguments
        ---------
        units : bool
            Also find the units (see
            :func:`~speechbrain_skill.lobes.student.active_units.active_units`);
            False returns None for them unless they were planned.

        Returns
        -------
        value : torch.Tensor
            As :meth:`forward`.
        kept : torch.Tensor or None
            Indices of the non-zero units, or None to compute all.

        Example
        -------
        >>> gate = HardConcreteGate(4, init_drop_rate=0.01).eval()
        >>> value, kept = gate.value_and_units()
        >>> value.shape, kept
        (torch.Size([4]), None)
        """
        if self.planned is not None:
            return self.planned
        value = self()
        return value, (active_units(value) if units else None)
