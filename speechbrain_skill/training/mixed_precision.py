"""Mixed-precision rules shared by the Brains: one skip decision for all optimizers.

``GradScaler.step`` decides per optimizer: with an inf only in the main
weights' gradients, the weights skip the step but the gate and multiplier
optimizers step (on zeroed, clipped gradients: their momentum moves them),
and the Adam step counts drift apart. :func:`step_together` takes one
decision for every optimizer from the global gradient norm, which the clip
computes anyway: a single host sync per step, and only when the scaler is
enabled.
"""

import torch


def step_together(scaler, optimizers, total_norm):
    """Step every optimizer, or none when any gradient is non-finite (fp16).

    Call after ``scaler.unscale_`` of each optimizer and the gradient clip.
    With the scaler disabled (fp32, bf16) every optimizer steps, without a
    host sync. The scale is updated as ``GradScaler.update`` does (backed off
    when any optimizer found an inf).

    Arguments
    ---------
    scaler : torch.amp.GradScaler
        The Brain's scaler (enabled or not).
    optimizers : iterable of torch.optim.Optimizer
        All optimizers of the step.
    total_norm : torch.Tensor
        Norm of all their gradients together (``clip_grad_norm_``'s result):
        non-finite exactly when some gradient is.

    Returns
    -------
    bool
        Whether the optimizers stepped.

    Example
    -------
    >>> weight = torch.nn.Parameter(torch.ones(2))
    >>> optimizer = torch.optim.SGD([weight], lr=1.0)
    >>> scaler = torch.amp.GradScaler("cpu", init_scale=4.0)
    >>> scaler.scale(weight.sum() * float("inf")).backward()
    >>> scaler.unscale_(optimizer)
    >>> step_together(scaler, [optimizer], weight.grad.norm())
    False
    >>> weight.tolist(), scaler.get_scale()
    ([1.0, 1.0], 2.0)
    """
    optimizers = list(optimizers)
    if not scaler.is_enabled():
        for optimizer in optimizers:
            optimizer.step()
        return True
    stepped = bool(torch.isfinite(total_norm))
    if stepped:
        for optimizer in optimizers:
            optimizer.step()
    scaler.update()
    return stepped
