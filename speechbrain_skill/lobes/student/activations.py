"""Activations named as in Hugging Face configs, without importing transformers."""

import functools

import torch.nn.functional as F

_ACTIVATIONS = {
    "gelu": F.gelu,
    "gelu_new": functools.partial(F.gelu, approximate="tanh"),
    "gelu_pytorch_tanh": functools.partial(F.gelu, approximate="tanh"),
    "relu": F.relu,
    "silu": F.silu,
}


def get_activation(name):
    """Return the activation function called ``name`` in a Hugging Face config.

    Arguments
    ---------
    name : str
        ``gelu`` (exact, erf based), ``gelu_new``, ``gelu_pytorch_tanh``,
        ``relu`` or ``silu``.

    Returns
    -------
    callable

    Example
    -------
    >>> import torch
    >>> get_activation("relu")(torch.tensor([-1.0, 2.0])).tolist()
    [0.0, 2.0]
    """
    try:
        return _ACTIVATIONS[name]
    except KeyError:
        raise ValueError(
            f"Unsupported activation '{name}'; expected one of {sorted(_ACTIVATIONS)}."
        ) from None
