"""Helpers on ``torch.nn.Module`` objects as SpeechBrain hands them to Brains."""


def unwrap(module):
    """Return the module inside DDP / DataParallel wrappers (or the module itself).

    Example
    -------
    >>> import torch
    >>> layer = torch.nn.Linear(2, 2)
    >>> unwrap(layer) is layer, unwrap(torch.nn.DataParallel(layer)) is layer
    (True, True)
    """
    while hasattr(module, "module"):
        module = module.module
    return module
