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


class GateDraw:
    """Samples of a list of gates, with their zeros on their way to the host.

    The device-to-host copy of the zero pattern is queued asynchronously
    (into pinned memory on a GPU). Drawn at the end of a training step, the
    copy completes during the host sync that the step makes anyway
    (SpeechBrain's copy of the loss), so the next forward pass learns which
    units to skip without waiting for the GPU again
    (:meth:`PrunableSSLEncoder.draw_gates_ahead`).

    Arguments
    ---------
    gates : list of HardConcreteGate
        The gates of one forward pass, in the order the pass uses them.
    ahead : bool
        Queue the copy (pinned memory, asynchronous) for a later pass;
        otherwise read the zeros now (one host sync).

    Example
    -------
    >>> from speechbrain_skill.lobes.student.hard_concrete import HardConcreteGate
    >>> gate = HardConcreteGate(4)
    >>> with torch.no_grad():
    ...     _ = gate.log_alpha.copy_(torch.tensor([30.0, -30.0, -30.0, -30.0]))
    >>> draw = GateDraw([gate], ahead=True)
    >>> draw.values[0].tolist(), draw.kept()[0].tolist()
    ([1.0, 0.0, 0.0, 0.0], [0])
    """

    def __init__(self, gates, ahead=False):
        self.gates = list(gates)
        self.values = [gate() for gate in self.gates]
        flat = torch.cat([value.detach().reshape(-1) for value in self.values])
        self.device = flat.device
        nonzero = flat != 0
        self.event = None
        if not ahead:
            self.host = nonzero.cpu()  # the one host sync of this pass
            return
        pinned = self.device.type == "cuda"
        self.host = torch.empty(nonzero.shape, dtype=torch.bool, pin_memory=pinned)
        self.host.copy_(nonzero, non_blocking=True)
        if pinned:
            self.event = torch.cuda.Event()
            self.event.record()

    def __deepcopy__(self, memo):
        """A copied model gets no draw (the samples belong to this model's step)."""
        return None

    def kept(self):
        """Per gate, the indices of its non-zero units (or None: compute all)."""
        if self.event is not None:
            self.event.synchronize()  # long done when drawn a step ahead
        kept, offset = [], 0
        for value in self.values:
            size = value.numel()
            units = self.host[offset : offset + size].nonzero().squeeze(1)
            kept.append(_select(units, size))
            offset += size
        if self.device.type != "cpu":
            kept = _to_device(kept, self.device)
        return kept


@contextlib.contextmanager
def planned_gates(gates, drawn=None):
    """Use one draw of the gates for a whole forward pass.

    Inside the context each gate returns its planned value (the same sample
    at every call) and :meth:`HardConcreteGate.value_and_units` its planned
    units; the plan is dropped on exit. Finding the units of a draw made
    here costs one host sync for all gates; a draw made ahead (``drawn``)
    usually none.

    Arguments
    ---------
    gates : list of HardConcreteGate
        The gates of one forward pass, in the order the pass uses them.
    drawn : GateDraw, optional
        A draw of exactly these gates made earlier; otherwise they are drawn
        now.

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
    if drawn is None or drawn.gates != list(gates):
        drawn = GateDraw(gates)
    try:
        for gate, value, units in zip(drawn.gates, drawn.values, drawn.kept()):
            gate.planned = (value, units)
        yield
    finally:
        for gate in drawn.gates:
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
    """Row indices of the listed heads in a weight of num_heads * head_dim rows.

    Example
    -------
    >>> head_rows(torch.tensor([0, 2]), 2).tolist()
    [0, 1, 4, 5]
    """
    offsets = torch.arange(head_dim, device=heads.device)
    return (heads.unsqueeze(1) * head_dim + offsets).flatten()
