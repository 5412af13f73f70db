"""One learning-rate factor for every parameter group, aligned with the reference.

The DPHuBERT and DistilHuBERT reference implementations scale EVERY parameter
group (main weights, gate ``log_alpha`` at ``reg_lr``, Lagrange multipliers)
by one warmup-then-linear-decay factor, and optimizer step ``k`` (counted from
1) already runs at ``k / num_warmup_steps`` of the peak. SpeechBrain's
``LinearWarmupScheduler.calculate_lr(k)`` gives exactly that value for step
``k``; calling the scheduler object after each step instead would run step
``k`` at ``calculate_lr(k - 1)`` (step 1 at lr 0, or at the optimizer's peak lr
when nothing sets it before the first step).
"""


def set_scheduled_lrs(scheduler, optimizers, step):
    """Set each group's lr to its base lr times the schedule's factor at ``step``.

    The base lr of a group is the lr it was built with, remembered in the
    group as ``initial_lr`` (kept by optimizer checkpoints). Call before the
    first step and after every optimizer step with the number of the next
    step (``optimizer_step + 1``).

    Arguments
    ---------
    scheduler : speechbrain.nnet.schedulers.LinearWarmupScheduler or None
        Any object with ``calculate_lr(step)`` and the peak value ``lr0``; its
        ``current_step`` is kept equal to the steps taken (``step - 1``) so
        that its own checkpoint stays meaningful. None: constant lr.
    optimizers : list of torch.optim.Optimizer
        Every optimizer that follows the schedule.
    step : int
        The optimizer step about to be taken, counted from 1.

    Returns
    -------
    float
        The factor applied.

    Example
    -------
    >>> import torch
    >>> from speechbrain.nnet.schedulers import LinearWarmupScheduler
    >>> main = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=2e-4)
    >>> gates = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=0.02)
    >>> schedule = LinearWarmupScheduler(2e-4, 4, 10)  # peak, warmup, total
    >>> set_scheduled_lrs(schedule, [main, gates], step=1)
    0.25
    >>> main.param_groups[0]["lr"], gates.param_groups[0]["lr"]
    (5e-05, 0.005)
    >>> [set_scheduled_lrs(schedule, [main, gates], s) for s in (4, 7, 10)]
    [1.0, 0.5, 0.0]
    """
    factor = 1.0
    if scheduler is not None:
        factor = scheduler.calculate_lr(step) / scheduler.lr0
        scheduler.current_step = step - 1
    for optimizer in optimizers:
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
            group["lr"] = group["initial_lr"] * factor
    return factor
