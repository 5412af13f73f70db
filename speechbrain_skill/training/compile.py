"""Opt-in ``torch.compile`` of a module's forward, falling back to eager execution.

:func:`compile_forward` replaces a module's ``forward`` by a compiled version
in place, so parameter names, checkpoints, attribute access and DDP wrapping
stay as they are (``torch.compile(module)`` would return a wrapper whose
state-dict keys carry an ``_orig_mod.`` prefix). Compilation happens at the
first call; if it fails there (no C++ compiler, an unsupported operation, an
old PyTorch), a warning names the module and the cause and the module runs
eagerly from then on. A failure that only shows in a compiled backward pass
is not caught: switch compilation off for that module.

The distillation Brains call it for SpeechBrain's ``--compile`` run option
(``--compile_module_keys`` chooses the modules, default the teacher and the
student; ``--compile_mode`` and ``--compile_using_dynamic_shape_tracing``
are passed on).
"""

import logging

import torch

logger = logging.getLogger(__name__)


class _CompiledOrEager:
    """Call the compiled function; after a failure, the eager one."""

    def __init__(self, name, eager, options):
        self.name = name
        self.eager = eager
        self.compiled = torch.compile(eager, **options)

    def __call__(self, *args, **kwargs):
        if self.compiled is not None:
            try:
                return self.compiled(*args, **kwargs)
            except Exception as err:  # any compiler failure: run eagerly
                torch._dynamo.reset()
                logger.warning(
                    "torch.compile of %s failed, running it eagerly: %s: %s",
                    self.name,
                    type(err).__name__,
                    str(err).splitlines()[0] if str(err) else "",
                )
                self.compiled = None
        return self.eager(*args, **kwargs)


def compile_forward(module, name=None, method="forward", **options):
    """Compile ``module.forward`` (or another method) in place, with an eager fallback.

    Arguments
    ---------
    module : torch.nn.Module
        Module whose forward is compiled (not a DDP wrapper: unwrap first).
    name : str, optional
        Name used in the fallback warning.
    method : str
        The method to compile.
    **options
        ``torch.compile`` options (``mode``, ``dynamic``, ``fullgraph``,
        ``backend``).

    Returns
    -------
    torch.nn.Module
        The same module.

    Example
    -------
    >>> layer = torch.nn.Linear(3, 2)
    >>> expected = layer(torch.ones(1, 3))
    >>> layer = compile_forward(layer, backend="eager")
    >>> torch.allclose(layer(torch.ones(1, 3)), expected)
    True
    >>> sorted(layer.state_dict())
    ['bias', 'weight']
    """
    name = name or type(module).__name__
    if not hasattr(torch, "compile"):
        logger.warning("This PyTorch has no torch.compile: %s runs eagerly.", name)
        return module
    if not isinstance(getattr(module, method), _CompiledOrEager):
        setattr(
            module, method, _CompiledOrEager(name, getattr(module, method), options)
        )
    return module


def is_compiled(module, method="forward"):
    """Tell whether :func:`compile_forward` was applied and has not fallen back.

    Example
    -------
    >>> layer = torch.nn.Linear(3, 2)
    >>> is_compiled(layer), is_compiled(compile_forward(layer, backend="eager"))
    (False, True)
    """
    function = module.__dict__.get(method)
    return isinstance(function, _CompiledOrEager) and function.compiled is not None
