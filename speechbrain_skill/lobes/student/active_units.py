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

Finding the non-zero units makes the host wait for the GPU (a data-dependent
shape). :func:`planned_gates` samples every gate of a forward pass at its
start and reads all their zeros in ONE device-to-host copy, instead of one
wait per gated module.
"""

import contextlib

import torch

MAX_KEPT_FRACTION = 0.75


def _select(kept, num_units):
    """Apply the skipping rule to the indices of the non-zero units."""
    if kept.numel() > MAX_KEPT_FRACTION * num_units:
        return None
    if kept.numel() == 0:
        return kept.new_zeros(1)
    return kept


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
    return _select(gate.detach().nonzero().squeeze(1), gate.numel())


@contextlib.contextmanager
def planned_gates(gates):
    """Sample the gates once and find all their non-zero units with one host sync.

    Inside the context each gate returns its planned value (the same sample
    at every call) and :meth:`HardConcreteGate.value_and_units` its planned
    units; the plan is dropped on exit.

    Arguments
    ---------
    gates : list of HardConcreteGate
        The gates of one forward pass, in the order the pass uses them.

    Example
    -------
    >>> from speechbrain_skill.lobes.student.hard_concrete import HardConcreteGate
    >>> gate = HardConcreteGate(4)
    >>> with torch.no_grad():
    ...     _ = gate.log_alpha.copy_(torch.tensor([30.0, -30.0, -30.0, -30.0]))
    >>> with planned_gates([gate]):
    ...     value, kept = gate.value_and_units()
    ...     same = gate() is value
    >>> value.tolist(), kept.tolist(), same, gate.planned
    ([1.0, 0.0, 0.0, 0.0], [0], True, None)
    """
    if torch.compiler.is_compiling() or not gates:
        yield
        return
    values = [gate() for gate in gates]
    flat = torch.cat([value.detach().reshape(-1) for value in values])
    nonzero = (flat != 0).cpu()  # the one host sync
    kept, offset = [], 0
    for value in values:
        size = value.numel()
        kept.append(_select(nonzero[offset : offset + size].nonzero().squeeze(1), size))
        offset += size
    if flat.device.type != "cpu":
        kept = _to_device(kept, flat.device)
    try:
        for gate, value, units in zip(gates, values, kept):
            gate.planned = (value, units)
        yield
    finally:
        for gate in gates:
            gate.planned = None


def _to_device(kept, device):
    """Move host index tensors to ``device`` in one asynchronous copy."""
    present = [units for units in kept if units is not None]
    if not present:
        return kept
    joined = torch.cat(present).pin_memory().to(device, non_blocking=True)
    pieces = iter(joined.split([units.numel() for units in present]))
    return [None if units is None else next(pieces) for units in kept]


def head_rows(heads, head_dim):
    """Row indices of the listed heads in a (num_heads * head_dim, ...) weight.

    Example
    -------
    >>> head_rows(torch.tensor([0, 2]), 2).tolist()
    [0, 1, 4, 5]
    """
    offsets = torch.arange(head_dim, device=heads.device)
    return (heads.unsqueeze(1) * head_dim + offsets).flatten()
