"""Skip the units whose gate value is exactly zero: same result, fewer operations.

A hard-concrete sample is exactly 0 for a growing share of the units as
pruning proceeds (and the deterministic eval mask is 0 on every pruned unit).
Such a unit contributes nothing to the output, and the gradients of its
weights and of its ``log_alpha`` are exactly 0 (the clamp of the sample has
no gradient where it clips). Computing only the other units, with the
weights gathered by ``index_select``, gives the same outputs up to float
summation order, and the same gradients: ``index_select`` returns
full-size gradients with zeros in the skipped rows, so an optimizer updates
every parameter exactly as it would after the full computation.

Gathering copies weights, so it pays only when enough units are zero:
:func:`active_units` returns None (compute everything) unless at most
:data:`MAX_KEPT_FRACTION` of the units are non-zero. Under ``torch.compile``
it always returns None (the kept count is data-dependent).
"""

import torch

MAX_KEPT_FRACTION = 0.75


def active_units(gate):
    """Indices of the non-zero entries of a gate vector, or None to compute all.

    Arguments
    ---------
    gate : torch.Tensor
        Gate values (num_units,), a sample or a deterministic mask.

    Returns
    -------
    torch.Tensor or None
        Long indices, at least one (an all-zero gate keeps unit 0, whose
        zero gate value still cancels it), or None when skipping is not
        worth it or not possible.

    Example
    -------
    >>> active_units(torch.tensor([0.0, 0.3, 0.0, 0.0])).tolist()
    [1]
    >>> active_units(torch.tensor([1.0, 0.3, 1.0, 1.0])) is None
    True
    >>> active_units(torch.zeros(4)).tolist()
    [0]
    """
    if torch.compiler.is_compiling():
        return None
    kept = gate.detach().nonzero().squeeze(1)
    if kept.numel() > MAX_KEPT_FRACTION * gate.numel():
        return None
    if kept.numel() == 0:
        return kept.new_zeros(1)
    return kept


def head_rows(heads, head_dim):
    """Row indices of the listed heads in a weight of num_heads * head_dim rows.

    Example
    -------
    >>> head_rows(torch.tensor([0, 2]), 2).tolist()
    [0, 1, 4, 5]
    """
    offsets = torch.arange(head_dim, device=heads.device)
    return (heads.unsqueeze(1) * head_dim + offsets).flatten()
