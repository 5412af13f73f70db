"""Mixed-precision rules shared by the Brains: one skip decision for all optimizers.

``GradScaler.step`` decides per optimizer: with an inf only in the main
weights' gradients, the weights skip the step but the gate and multiplier
optimizers step (on zeroed, clipped gradients: their momentum moves them),
and the Adam step counts drift apart. :func:`step_together` takes one
decision for every optimizer from the global gradient norm, which the clip
computes anyway: a single host sync per step, and only when the scaler is
enabled; none with fused optimizers, which skip on the device.
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
    bool or None
        Whether the optimizers stepped; None when fused optimizers (e.g.
        ``AdamW(fused=True)``) took the decision on the device, without a
        host sync.

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
    if all(getattr(o, "_step_supports_amp_scaling", False) for o in optimizers):
        return _step_fused(scaler, optimizers, total_norm)
    stepped = bool(torch.isfinite(total_norm))
    if stepped:
        for optimizer in optimizers:
            optimizer.step()
    scaler.update()
    return stepped


def _step_fused(scaler, optimizers, total_norm):
    """Fused optimizers skip on the device: give each the one global decision."""
    found_inf = (~torch.isfinite(total_norm)).to(torch.float32)
    for optimizer in optimizers:
        state = scaler._per_optimizer_states[id(optimizer)]
        state["found_inf_per_device"] = {found_inf.device: found_inf}
        scaler.step(optimizer)
    scaler.update()
    return None


def follow_training_precision(brain, run_opts=None, hparams=None):
    """Evaluate in the training precision unless ``eval_precision`` was given.

    SpeechBrain's ``eval_precision`` defaults to fp32 whatever ``precision``
    is, so a bf16 or fp16 run validates at fp32 speed. The loss is computed
    in fp32 either way (targets and loss terms are fp32). Call after
    ``Brain.__init__``.

    Arguments
    ---------
    brain : speechbrain.Brain
        The Brain (its ``precision``, ``device_type``).
    run_opts : dict, optional
        The run options it was given.
    hparams : dict, optional
        Its hyperparameters (``eval_precision`` there counts as given).

    Returns
    -------
    str
        The evaluation precision now in force.

    Example
    -------
    >>> from types import SimpleNamespace
    >>> brain = SimpleNamespace(
    ...     precision="bf16", eval_precision="fp32", device_type="cpu"
    ... )
    >>> follow_training_precision(brain, {"precision": "bf16"})
    'bf16'
    >>> brain.eval_precision = "fp32"  # given on the command line: kept
    >>> follow_training_precision(brain, {"eval_precision": "fp32"})
    'fp32'
    """
    from speechbrain.utils.autocast import AMPConfig, TorchAutocast

    given = (run_opts or {}).get("eval_precision") is not None or (
        "eval_precision" in (hparams or {})
    )
    if not given and brain.eval_precision != brain.precision:
        brain.eval_precision = brain.precision
        brain.evaluation_ctx = TorchAutocast(
            device_type=brain.device_type,
            dtype=AMPConfig.from_name(brain.precision).dtype,
        )
    return brain.eval_precision
