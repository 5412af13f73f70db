"""Count the calls that make the host wait for a GPU, on any device.

On CUDA, reading a tensor's value on the host (``item``, ``float()``,
``bool()``, ``tolist``, ``cpu``, ``numpy``) and data-dependent shapes
(``nonzero``, boolean-mask indexing) wait for every queued kernel.
:class:`HostSyncCounter` counts these calls where our code (or
SpeechBrain's) makes them, so a CPU test can bound the syncs of a training
step. Calls made inside torch itself (e.g. an optimizer reading its CPU step
counter) are not counted: they do not touch device tensors; nor are calls on
what was computed from a counted ``cpu()`` or filled by an asynchronous
``copy_(..., non_blocking=True)`` (host copies; such a copy is waited for by
the next counted sync, as CUDA orders the work of a stream).
"""

import sys
from collections import Counter

import torch
from torch.overrides import TorchFunctionMode

SYNC_METHODS = frozenset(
    """item __float__ __int__ __bool__ __index__ tolist cpu numpy nonzero
    argwhere masked_select unique""".split()
)


DISPATCH_FILES = ("torch/overrides.py", "torch/_tensor.py", "host_syncs.py")


def _site():
    """The calling site if it is ours or SpeechBrain's (not torch's), else None."""
    frame = sys._getframe(2)
    while frame is not None and frame.f_code.co_filename.endswith(DISPATCH_FILES):
        frame = frame.f_back
    if frame is None:
        return None
    path = frame.f_code.co_filename
    if "speechbrain_skill" in path or "/speechbrain/" in path:
        name = path.rsplit("/", 1)[-1]
        return f"{name}:{frame.f_code.co_qualname}:{frame.f_lineno}"
    return None


class HostSyncCounter(TorchFunctionMode):
    """Count host-sync calls made by speechbrain_skill or SpeechBrain code.

    Attributes
    ----------
    sites : collections.Counter
        ``file:qualname:line`` -> calls.

    Example
    -------
    >>> with HostSyncCounter() as counter:
    ...     _ = float(torch.ones(2).sum())
    >>> sum(counter.sites.values())  # a test file is not counted
    0
    """

    def __init__(self):
        super().__init__()
        self.sites = Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        is_mask_index = (
            name == "__getitem__"
            and len(args) > 1
            and isinstance(args[1], torch.Tensor)
            and args[1].dtype == torch.bool
        )
        if name == "copy_" and (kwargs or {}).get("non_blocking"):
            # An asynchronous copy to (pinned) host memory: no wait now, and
            # the destination is a host tensor.
            args[0]._host_copy = True
        host_copy = any(
            getattr(t, "_host_copy", False) for t in args if isinstance(t, torch.Tensor)
        )
        out = func(*args, **(kwargs or {}))
        if host_copy:  # computed from host copies: on the host
            if isinstance(out, torch.Tensor):
                out._host_copy = True
        elif name in SYNC_METHODS or is_mask_index:
            site = _site()
            if site is not None:
                self.sites[site] += 1
                if name == "cpu" and isinstance(out, torch.Tensor):
                    out._host_copy = True
        return out

    def total(self):
        """Number of counted calls."""
        return sum(self.sites.values())
