"""The distillation recipe's stages: what each may ignore, what passes between them.

``recipes/LibriSpeech/distillation/train.py`` builds each stage as a
:class:`~speechbrain_skill.training.stage_flow.Stage` (its function reads the
recipe's hparams) and runs them in order through a
:class:`~speechbrain_skill.training.stage_flow.StageFlow`::

    layer groups -> [distill + prune -> materialise] -> final -> export

The layer groups (a dict: ``groups``, ``student_layers``, ``source``) and the
student (:class:`StudentParts`) pass from stage to stage in memory; a stage
that is skipped on a rerun rebuilds its result from its record and its output
on disk. Recipes without pruning leave the two middle stages out.

Each stage's fingerprint covers every setting of the run except those its
``IGNORE`` entry names (:data:`IGNORE`): the run's logging and paths, and the
settings of other stages whose effect reaches it through the stage before
it. :data:`NOT_A_STAGE_SETTING` are the settings no stage depends on.
"""

import gc

import torch
from speechbrain.utils.distributed import infer_device

from speechbrain_skill.distillation.stages import save_end_of_stage
from speechbrain_skill.training.modules import unwrap
from speechbrain_skill.training.stage_flow import Stage

# Logging, loader workers, where things are written, how the data is found
# (the manifests' content is a source of the stages that read them).
NOT_A_STAGE_SETTING = (
    "on_stale",
    "log_interval",
    "ckpt_interval_minutes",
    "train_log",
    "train_logger",
    "num_workers",
    "pin_memory",
    "persistent_workers",
    "*_dataloader_opts.num_workers",
    "*_dataloader_opts.pin_memory",
    "*_dataloader_opts.persistent_workers",
    "*_folder",
    "data_folder",
    "train_splits",
    "dev_splits",
    "skip_prep",
    "train_csv",
    "valid_csv",
    "calibration_csv",
    "*_checkpointer.checkpoints_dir",
    "*_hparams.history_path",
)
LAYER_GROUPS = (
    "groups",
    "num_groups",
    "similarity_*",
    "linkage",
    "calibration_*",
    "max_frames_per_utterance",
    "student_layers",
)
PRUNE = (
    "target_sparsity",
    "sparsity_warmup_steps",
    "prune_*",
    "reg_lr",
    "reg_lr_follows_schedule",
    "lagrangian",
    "gate_opt_class",
    "lambda_opt_class",
)
FINAL = ("final_*", "weight_decay", "bias_weight_decay")
EXPORT = ("export", "export_formats", "experiment_name")
# What only the training stages read: the layer groups stage ignores them.
TRAINING = (
    "min_duration",
    "max_duration",
    "duration_filter_warn_fraction",
    "max_crop_seconds",
    "max_batch_seconds",
    "num_buckets",
    "valid_*",
    "*_dataloader_opts",
    "prune",
    "student",
    "student_num_layers",
    "feat_proj_layer_norm",
    "feature_grad_scale",
    "projection_sharing",
    "head_hidden_dim",
    "heads",
    "save_student",
    "load_student",
    "l1_weight",
    "cos_weight",
    "cos_type",
    "distill_loss",
    "robust",
    "noise_csv",
    "rir_csv",
    "snr_*",
    "enhancement_*",
    "robust_block",
    "student_input_transform",
    "auxiliary_loss",
    "extra_modules",
    "max_grad_norm",
    "run_opts",
)
IGNORE = {
    "layer_groups": (*NOT_A_STAGE_SETTING, *TRAINING, *PRUNE, *FINAL, *EXPORT),
    "prune": (*NOT_A_STAGE_SETTING, *LAYER_GROUPS, *FINAL, *EXPORT),
    "materialise": (*NOT_A_STAGE_SETTING, *LAYER_GROUPS, *FINAL, *EXPORT),
    "final": (*NOT_A_STAGE_SETTING, *LAYER_GROUPS, *PRUNE, *EXPORT),
    "export": (*NOT_A_STAGE_SETTING, *LAYER_GROUPS, *PRUNE, *FINAL[1:]),
}
TRAINING_SOURCES = ("teacher", "train_csv", "valid_csv")


RUN_OPTIONS = ("precision", "grad_accumulation_factor")


def run_settings(settings, run_opts):
    """The yaml's resolved settings plus the run options that change results.

    Example
    -------
    >>> run_settings({"seed": 1}, {"precision": "bf16", "grad_accumulation_factor": 1})
    {'seed': 1, 'run_opts.precision': 'bf16', 'run_opts.grad_accumulation_factor': 1}
    """
    return {**settings, **{f"run_opts.{k}": run_opts[k] for k in RUN_OPTIONS}}


def planned_stages(prune):
    """The stage names of a run, in order.

    Example
    -------
    >>> planned_stages(False)
    ['layer_groups', 'final', 'export']
    """
    middle = ["prune", "materialise"] if prune else []
    return ["layer_groups", *middle, "final", "export"]


def declared_stages(prune, clustering=True):
    """The stages of a run without their functions: enough for fingerprints.

    Example
    -------
    >>> [stage.name for stage in declared_stages(True)][1:3]
    ['prune', 'materialise']
    """
    sources = {
        "layer_groups": ("teacher", "calibration_csv") if clustering else ("teacher",),
        "prune": TRAINING_SOURCES,
        "final": TRAINING_SOURCES,
    }
    return [
        Stage(name, ignore=IGNORE[name], sources=sources.get(name, ()))
        for name in planned_stages(prune)
    ]


class StudentParts:
    """The student handed from stage to stage: model, heads, extra modules.

    Arguments
    ---------
    model : PrunableSSLEncoder
        The student encoder.
    heads : torch.nn.Module
        Its prediction heads / projections.
    extra_modules : dict
        Other trained modules (e.g. the enhancement head), shared by the stages.
    pending : callable, optional
        Called once by :meth:`ready` before the weights are used (e.g. recover
        a skipped stage's end-of-stage checkpoint only when a later stage runs).
    """

    def __init__(self, model, heads, extra_modules, pending=None):
        self.model = model
        self.heads = heads
        self.extra_modules = extra_modules
        self.pending = pending

    def ready(self):
        """Load pending weights (once) and return self."""
        if self.pending is not None:
            pending, self.pending = self.pending, None
            pending()
        return self

    def modules(self):
        """The trained modules, by the names the checkpointers use."""
        return {"student": self.model, "heads": self.heads, **self.extra_modules}


def stage_device(run_opts):
    """Where a stage outside a Brain runs: ``--device``, else this rank's device.

    SpeechBrain's ``device`` run option is None unless given; under
    ``torchrun`` each rank then uses its own accelerator (``cuda:<LOCAL_RANK>``).

    Example
    -------
    >>> stage_device({"device": "cpu"})
    'cpu'
    """
    return run_opts["device"] or infer_device()


def release_brain(checkpointer, keep):
    """Drop what a Brain added to ``checkpointer`` (itself, its optimizers).

    The Brain registers itself and its optimizers as recoverables; without
    this the stage's optimizer states and DDP buckets stay alive (held by the
    checkpointer) through the next stage.

    Arguments
    ---------
    checkpointer : speechbrain.utils.checkpoints.Checkpointer
        The stage's checkpointer.
    keep : iterable of str
        The recoverables it had before the Brain was made.

    Example
    -------
    >>> from speechbrain.utils.checkpoints import Checkpointer
    >>> import tempfile
    >>> checkpointer = Checkpointer(tempfile.mkdtemp(), {"a": torch.nn.Linear(1, 1)})
    >>> checkpointer.add_recoverable("optimizer", torch.nn.Linear(1, 1))
    >>> release_brain(checkpointer, ["a"])
    >>> list(checkpointer.recoverables)
    ['a']
    """
    keep = set(keep)
    for name in list(checkpointer.recoverables):
        if name not in keep:
            del checkpointer.recoverables[name]
            checkpointer.custom_load_hooks.pop(name, None)
            checkpointer.custom_save_hooks.pop(name, None)
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def training_stage(
    name, brain_class, objects, run_opts, fit_data, before_fit=None, **stage_args
):
    """A stage that fits a Brain on the student: distill + prune, or final.

    The student's modules join the stage's checkpointer (a rerun resumes
    them); when the stage is skipped, its end-of-stage weights are recovered
    only if a later stage runs (:meth:`StudentParts.ready`). After training,
    what the Brain added to the checkpointer (itself, its optimizers) is
    released, so it is not held through the next stage.

    Arguments
    ---------
    name : str
        ``"prune"`` or ``"final"``.
    brain_class : type
        The stage's Brain (``groups`` first, then SpeechBrain's arguments).
    objects : dict
        The stage's yaml objects: ``opt_class``, ``hparams`` (what the Brain
        reads), ``epoch_counter``, ``checkpointer``, ``modules`` (the Brain's
        modules besides the student's: teacher, Lagrangian).
    run_opts : dict
        SpeechBrain run options.
    fit_data : dict
        ``train_set``, ``valid_set`` and their loader arguments.
    before_fit : callable, optional
        ``before_fit(student)`` when the stage runs, before the Brain is made.
    **stage_args
        More :class:`~speechbrain_skill.training.stage_flow.Stage` arguments
        (``outputs`` beyond the checkpoints and history, ``detail``, ``title``).

    Returns
    -------
    Stage
    """
    checkpointer = objects["checkpointer"]

    def run(groups, student):
        """Fit the stage's Brain on the student; the student and the summary."""
        if before_fit is not None:
            before_fit(student)
        checkpointer.add_recoverables(student.modules())
        before = list(checkpointer.recoverables)
        brain = brain_class(
            groups["groups"],
            modules={**objects["modules"], **student.modules()},
            opt_class=objects["opt_class"],
            hparams=objects["hparams"],
            run_opts=run_opts,
            checkpointer=checkpointer,
        )
        brain.fit(objects["epoch_counter"], **fit_data)
        save_end_of_stage(checkpointer, brain)
        summary = {"skipped_files": brain.sync_skipped()}
        if "lagrangian" in objects["modules"]:  # pruning: how far it got
            sparsity = unwrap(student.model).expected_sparsity()
            summary["expected_sparsity"] = float(sparsity.detach())
        else:
            stats = brain.last_valid_stats
            summary["valid_loss"] = stats.get("loss")
            summary["valid_fit"] = {k: stats.get(k) for k in ("mean_cosine", "mean_l1")}
        del brain
        release_brain(checkpointer, before)
        return student, summary

    def load(summary, groups, student):
        """The skipped stage's student; its weights are recovered when needed."""
        checkpointer.add_recoverables(student.modules())
        student.pending = checkpointer.recover_if_possible  # if a later stage runs
        return student

    outputs = [checkpointer.checkpoints_dir, objects["hparams"]["history_path"]]
    return Stage(
        name,
        run,
        load,
        IGNORE[name],
        TRAINING_SOURCES,
        outputs + list(stage_args.pop("outputs", [])),
        **stage_args,
    )
