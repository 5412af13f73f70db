"""Leaving a multi-process (DDP) run cleanly."""

import torch


def end_process_group():
    """Destroy the default process group, if this process joined one.

    Called as the last line of every recipe. Without it the process group is
    torn down during interpreter exit, where gloo's threads can abort a rank
    ("terminate called without an active exception") after all its work is
    done, and ``torchrun`` then reports the whole run as failed.

    Returns
    -------
    bool
        Whether a process group was destroyed.

    Example
    -------
    >>> end_process_group()  # a single-process run: nothing to do
    False
    """
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return False
    torch.distributed.barrier()  # no rank leaves while another still communicates
    torch.distributed.destroy_process_group()
    return True
