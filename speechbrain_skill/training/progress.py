"""Progress of a training stage over its step budget, and stage banners.

SpeechBrain's progress bar counts the batches of one epoch. A stage that runs
a fixed number of optimizer steps over several epochs (``optimizer_step_limit``,
as the distillation stages do) is better shown as one bar over all its steps,
with the time left. :class:`StepBudgetProgress` gives a Brain that bar;
:func:`stage_banner` marks where a multi-stage run is.
"""

import logging
import time

from speechbrain.utils.distributed import if_main_process
from tqdm import tqdm

logger = logging.getLogger(__name__)

# SpeechBrain logs this when the step budget is reached: the normal end of a
# step-budget stage, not a problem, so it is not shown (the bar says the end).
LIMIT_MESSAGE = "Train iteration limit exceeded"


def format_duration(seconds):
    """Seconds as ``1 h 02 min``, ``3 min 05 s`` or ``12.3 s``.

    Arguments
    ---------
    seconds : float
        A duration.

    Returns
    -------
    str

    Example
    -------
    >>> format_duration(3725), format_duration(185), format_duration(12.34)
    ('1 h 02 min', '3 min 05 s', '12.3 s')
    """
    if seconds >= 3600:
        return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"
    if seconds >= 60:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"{seconds:.1f} s"


def stage_banner(index, total, name, detail=""):
    """Announce stage ``index`` of ``total`` (main process only).

    Arguments
    ---------
    index : int
        1-based stage number.
    total : int
        Number of stages of the run.
    name : str
        Stage name.
    detail : str
        What the stage does, e.g. its step budget.

    Returns
    -------
    str
        The banner line.

    Example
    -------
    >>> stage_banner(2, 5, "distill + prune", "600 steps")
    '==== stage 2/5: distill + prune (600 steps) ===='
    """
    text = f"stage {index}/{total}: {name}" + (f" ({detail})" if detail else "")
    line = f"==== {text} ===="
    if if_main_process():
        logger.info(line)
    return line


class _DropNormalEnd(logging.Filter):
    """Drop SpeechBrain's step-limit message while the budget was met."""

    def __init__(self, brain):
        super().__init__()
        self.brain = brain

    def filter(self, record):
        """False for the limit message at the budget's end."""
        return not (
            record.getMessage() == LIMIT_MESSAGE
            and self.brain._optimizer_step_limit_exceeded
        )


class StepBudgetProgress:
    """Brain mixin: one progress bar over a fit's optimizer-step budget.

    When ``optimizer_step_limit`` is set, ``fit`` shows one bar from the
    current (possibly resumed) step to the limit with the time left and the
    running loss, instead of one bar per epoch, and logs how long the stage
    took. Without a limit nothing changes. Put it first among the bases:
    ``class MyBrain(StepBudgetProgress, sb.Brain)``.

    Example
    -------
    >>> import speechbrain as sb, torch
    >>> class Regression(StepBudgetProgress, sb.Brain):
    ...     def compute_forward(self, batch, stage):
    ...         return self.modules.model(batch[0])
    ...     def compute_objectives(self, predictions, batch, stage):
    ...         return torch.nn.functional.mse_loss(predictions, batch[1])
    >>> brain = Regression({"model": torch.nn.Linear(2, 1)},
    ...     lambda params: torch.optim.SGD(params, 0.1),
    ...     run_opts={"noprogressbar": True})
    >>> brain.optimizer_step_limit = 7
    >>> data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(
    ...     torch.randn(12, 2), torch.randn(12, 1)), batch_size=4)
    >>> brain.fit(range(10), data)
    >>> brain.optimizer_step
    7
    """

    @property
    def progress_label(self):
        """Name on the bar: the ``stage_name`` hyperparameter, else ``train``."""
        return getattr(getattr(self, "hparams", None), "stage_name", None) or "train"

    def fit(self, epoch_counter, train_set, valid_set=None, progressbar=None, **kw):
        """SpeechBrain's ``fit`` with one bar over the step budget."""
        if self.optimizer_step_limit is None:
            return super().fit(epoch_counter, train_set, valid_set, progressbar, **kw)
        if progressbar is None:
            progressbar = not self.noprogressbar
        self._budget_bar_on = bool(progressbar) and if_main_process()
        self._budget_bar = None
        quiet = _DropNormalEnd(self)
        core_logger = logging.getLogger("speechbrain.core")
        core_logger.addFilter(quiet)
        start = time.time()
        try:
            super().fit(epoch_counter, train_set, valid_set, False, **kw)
        finally:
            core_logger.removeFilter(quiet)
            if self._budget_bar is not None:
                self._budget_bar.close()
        if if_main_process():
            logger.info(
                "%s: %d/%d steps, %s.",
                self.progress_label,
                self.optimizer_step,
                self.optimizer_step_limit,
                format_duration(time.time() - start),
            )

    def on_fit_start(self):
        """Open the bar once the checkpoint (and its step counter) is recovered."""
        super().on_fit_start()
        if self.optimizer_step_limit is not None:
            self._budget_bar = tqdm(
                total=self.optimizer_step_limit,
                initial=min(self.optimizer_step, self.optimizer_step_limit),
                desc=self.progress_label,
                unit="step",
                dynamic_ncols=True,
                disable=not getattr(self, "_budget_bar_on", False),
            )

    def fit_batch(self, batch):
        """Advance the bar by the optimizer steps this batch made."""
        before = self.optimizer_step
        loss = super().fit_batch(batch)
        bar = getattr(self, "_budget_bar", None)
        if bar is not None and self.optimizer_step > before:
            bar.update(self.optimizer_step - before)
            bar.set_postfix(loss=f"{float(loss):.4g}", refresh=False)
        return loss
