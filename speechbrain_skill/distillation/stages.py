"""Pieces of the distillation recipe's stages; the order lives in its ``train.py``.

The recipe (``recipes/LibriSpeech/distillation/train.py``) runs: data
preparation; layer groups (given, or found by layer similarity + clustering);
distillation + structured pruning; materialisation of the pruned student;
final distillation; export and report. The stages are objects
(:mod:`speechbrain_skill.training.stage_flow`, declared in
:mod:`speechbrain_skill.distillation.flow`); this module holds what they need
besides a Brain: the configuration checks (plain settings before any model is
built, then against the loaded teacher and student), the layer-groups search,
the student folders (written for the export and for resuming) and the
end-of-stage checkpoint.
"""

import json
import logging
from pathlib import Path

import torch

from speechbrain_skill.data.dataio import make_audio_dataloader
from speechbrain_skill.data.manifests import count_exclusions
from speechbrain_skill.distillation.lagrangian import validate_target_sparsity
from speechbrain_skill.distillation.targets import default_student_layers
from speechbrain_skill.layer_groups.clustering import validate_k
from speechbrain_skill.layer_groups.groups_file import validate_groups
from speechbrain_skill.training.batch_skipping import count_skipped
from speechbrain_skill.training.checks import (
    ConfigurationError,
    check_data_folder,
    check_positive,
    check_run_options,
)
from speechbrain_skill.training.modules import unwrap
from speechbrain_skill.training.stage_records import ON_STALE

logger = logging.getLogger(__name__)

STEP_BUDGETS = ("prune_steps", "final_steps")
STEP_COUNTS = ("log_interval", "num_buckets", "calibration_utterances")
WARMUPS = ("prune_warmup_steps", "final_warmup_steps", "sparsity_warmup_steps")
SECONDS = ("max_batch_seconds", "max_crop_seconds", "valid_max_seconds")


def check_settings(settings, run_opts):
    """Check a distillation recipe's plain settings; nothing is loaded.

    Run option conflicts, the data folder (or the manifests with
    ``skip_prep``), step budgets, target sparsity, the number of groups and
    the shape of explicit groups. Checks that need the teacher's depth are in
    :func:`check_models`.

    Arguments
    ---------
    settings : dict
        From :func:`speechbrain_skill.training.checks.read_settings`.
    run_opts : RunOptions or dict
        SpeechBrain run options from the command line.

    Example
    -------
    >>> import tempfile
    >>> settings = {"data_folder": tempfile.mkdtemp(), "prune": True,
    ...             "target_sparsity": 0.75, "prune_steps": 0, "final_steps": 10}
    >>> check_settings(settings, {})
    Traceback (most recent call last):
      ...
    speechbrain_skill.training.checks.ConfigurationError: prune_steps must be ...
    """
    check_run_options(settings, run_opts)
    check_data_folder(
        settings.get("data_folder"),
        skip_prep=settings.get("skip_prep", False),
        manifests=[settings.get("train_csv"), settings.get("valid_csv")],
    )
    pruning = settings.get("prune", True)
    budgets = STEP_BUDGETS if pruning else STEP_BUDGETS[1:]
    check_positive(settings, (*budgets, *STEP_COUNTS))
    check_positive(settings, WARMUPS, allow_zero=True)
    check_positive(settings, SECONDS, integer=False)
    if pruning and "target_sparsity" in settings:
        try:
            validate_target_sparsity(settings["target_sparsity"])
        except (TypeError, ValueError) as err:
            raise ConfigurationError(str(err)) from err
    if settings.get("groups"):
        validate_groups(settings["groups"])
    elif "num_groups" in settings:
        check_positive(settings, ["num_groups"])
    on_stale = settings.get("on_stale", "recompute")
    if on_stale not in ON_STALE:
        raise ConfigurationError(
            f"on_stale must be one of {ON_STALE}, got {on_stale!r}."
        )


def check_models(teacher, student, groups, num_groups, student_layers, auxiliary_loss):
    """Check the settings that depend on the loaded teacher and student.

    Arguments
    ---------
    teacher : FrozenSSLTeacher
        The teacher (its number of hidden states bounds groups and K).
    student : PrunableSSLEncoder
        The student (bounds ``student_layers``).
    groups : list of list of int or None
        Explicit groups; None: K groups found by clustering.
    num_groups : int or None
        K, for clustering.
    student_layers : list of int or None
        Explicit student layer per group.
    auxiliary_loss : object or None
        E.g. the enhancement loss; its ``validate_student`` runs if it has one.

    Example
    -------
    >>> import tempfile
    >>> from speechbrain_skill.lobes.tiny_models import save_tiny_model
    >>> from speechbrain_skill.lobes.student import PrunableSSLEncoder
    >>> from speechbrain_skill.lobes.teacher import FrozenSSLTeacher
    >>> path = save_tiny_model(tempfile.mkdtemp())
    >>> teacher, student = FrozenSSLTeacher(path), PrunableSSLEncoder.from_hf(path)
    >>> check_models(teacher, student, None, 6, None, None)
    Traceback (most recent call last):
      ...
    ValueError: K must be between 1 and the number of hidden states (5), got 6.
    """
    num_states = teacher.num_hidden_states
    if groups:
        validate_groups(groups, num_states)
    else:
        validate_k(num_groups, num_states)
    num_student_states = unwrap(student).num_hidden_states
    for layer in student_layers or []:
        if not 0 <= int(layer) < num_student_states:
            raise ConfigurationError(
                f"student_layers has index {layer}, but the student has "
                f"{num_student_states} hidden states (0..{num_student_states - 1})."
            )
    check = getattr(auxiliary_loss, "validate_student", None)
    if check is not None:
        check(unwrap(student))


def configured_groups(groups, student_layers, num_states):
    """Groups given in the yaml and the student layer of each.

    Arguments
    ---------
    groups : list of list of int
        Teacher layer groups.
    student_layers : list of int or None
        Student layer per group; None: the deepest layer of each group.
    num_states : int
        Teacher hidden states.

    Returns
    -------
    tuple of (list of list of int, list of int)

    Example
    -------
    >>> configured_groups([[0], [1, 2]], None, 5)
    ([[0], [1, 2]], [0, 2])
    """
    groups = validate_groups(groups, num_states)
    layers = student_layers or default_student_layers(groups)
    if len(layers) != len(groups):
        raise ConfigurationError(
            f"student_layers has {len(layers)} entries for {len(groups)} groups."
        )
    return groups, [int(layer) for layer in layers]


def find_layer_groups(
    teacher,
    folder,
    calibration_csv,
    num_groups,
    linkage,
    measure,
    utterances,
    batch_size,
    max_seconds,
    max_frames_per_utterance,
    seed,
    teacher_name=None,
    device="cpu",
    progress=True,
    minibatch_size=None,
):
    """SKILL's layer groups: similarity of the teacher's layers, then clustering.

    Runs the teacher on a calibration subset and writes the similarity matrix,
    ``groups.json``, the heatmap and the dendrogram to ``folder`` (see
    :func:`speechbrain_skill.layer_groups.analysis.run_layer_analysis`).

    Arguments
    ---------
    teacher : FrozenSSLTeacher
        The teacher.
    folder : str or os.PathLike
        Output folder of the analysis.
    calibration_csv : str
        Manifest the calibration utterances are drawn from.
    num_groups : int
        K.
    linkage, measure : str
        Clustering linkage and similarity measure.
    utterances, batch_size : int
        Calibration subset size and batch size.
    max_seconds : float
        Longer utterances are cropped.
    max_frames_per_utterance : int or None
        Frame subsampling of each utterance.
    seed : int
        Subset and subsampling seed.
    teacher_name : str, optional
        Shown in the plots and the groups file.
    device : str
        Where the teacher runs.
    progress : bool
        Show a progress bar.
    minibatch_size : int, optional
        Frames per minibatch of ``cka_minibatch`` (its memory grows as the
        square); ignored by the other measures. None: the measure's default.

    Returns
    -------
    list of list of int
        The groups.
    """
    from speechbrain_skill.layer_groups.analysis import run_layer_analysis

    measure_options = {}
    if measure == "cka_minibatch" and minibatch_size is not None:
        measure_options["minibatch_size"] = int(minibatch_size)

    loader = make_audio_dataloader(
        calibration_csv,
        batch_size=batch_size,
        max_utterances=utterances,
        seed=seed,
        max_seconds=max_seconds,
    )
    result = run_layer_analysis(
        teacher,
        loader,
        folder,
        k=num_groups,
        linkage=linkage,
        measure=measure,
        teacher_name=teacher_name,
        max_frames_per_utterance=max_frames_per_utterance,
        seed=seed,
        device=device,
        progress=progress,
        metadata={"manifest": str(calibration_csv)},
        **measure_options,
    )
    print(result.summary())
    return result.groups


def save_student_folder(folder, student, heads, extra_modules, save_student):
    """Write a student folder: the student, ``heads.ckpt``, ``<name>.ckpt`` extras.

    Arguments
    ---------
    folder : str or os.PathLike
        Destination.
    student : PrunableSSLEncoder
        The student.
    heads : torch.nn.Module
        Prediction heads / projections.
    extra_modules : dict
        Other trained modules (e.g. the enhancement head).
    save_student : callable
        The model-folder writer, ``save_student(student, folder, modules=...)``.

    Example
    -------
    >>> import tempfile, os
    >>> from speechbrain_skill.lobes.tiny_models import save_tiny_model
    >>> from speechbrain_skill.lobes.student import PrunableSSLEncoder, save_student
    >>> student = PrunableSSLEncoder.from_hf(save_tiny_model(tempfile.mkdtemp()))
    >>> folder = tempfile.mkdtemp()
    >>> save_student_folder(folder, student, torch.nn.Linear(2, 2), {}, save_student)
    >>> "heads.ckpt" in os.listdir(folder)
    True
    """
    modules = {"heads": unwrap(heads), **extra_modules}
    save_student(unwrap(student), folder, modules=modules)


def load_student_folder(folder, heads, extra_modules, load_student):
    """Read a folder written by :func:`save_student_folder` into new objects.

    Arguments
    ---------
    folder : str or os.PathLike
        The student folder.
    heads : torch.nn.Module
        Heads of the right shape; their weights are loaded when saved.
    extra_modules : dict
        Extra modules; each is loaded from ``<name>.ckpt`` when present.
    load_student : callable
        ``load_student(folder)``.

    Returns
    -------
    PrunableSSLEncoder
    """
    folder = Path(folder)
    student = load_student(folder)
    for name, module in {"heads": heads, **extra_modules}.items():
        path = folder / f"{name}.ckpt"
        if path.is_file():
            unwrap(module).load_state_dict(torch.load(path, map_location="cpu"))
    return student


def run_facts(experiment_name, prune_steps, final_steps, data):
    """What the model card says about a run: method, data, steps.

    Arguments
    ---------
    experiment_name : str
        The yaml's experiment name.
    prune_steps : int or None
        Steps of distillation + pruning; None without pruning.
    final_steps : int
        Steps of final distillation.
    data : object
        The training data (splits or manifest).

    Returns
    -------
    dict

    Example
    -------
    >>> run_facts("skill", 10, 5, ["train-clean-100"])["steps"]
    {'distill + prune': 10, 'final': 5}
    """
    steps = {"final": final_steps}
    method = "distillation of teacher layer groups"
    if prune_steps is not None:
        steps = {"distill + prune": prune_steps, **steps}
        method += " + structured pruning (hard-concrete gates, Lagrangian)"
    return {
        "experiment": experiment_name,
        "method": method,
        "data": data,
        "steps": steps,
    }


def data_losses(skipped, save_folder, groups_file=None):
    """Every file the run could not use, for the report (distinct files).

    Arguments
    ---------
    skipped : dict
        Reason -> utterance ids skipped in training and validation (all
        processes, all stages).
    save_folder : str or os.PathLike
        The preparation's folder (its ``excluded.csv``).
    groups_file : str or os.PathLike, optional
        The layer analysis' groups file (its calibration skips).

    Returns
    -------
    dict
        ``skipped_files`` (counts), ``skipped_file_ids``,
        ``excluded_in_preparation`` and ``skipped_in_calibration`` (counts).
    """
    calibration = {}
    if groups_file is not None and Path(groups_file).is_file():
        metadata = json.loads(Path(groups_file).read_text()).get("metadata", {})
        calibration = count_skipped(metadata.get("skipped_files", {}))
    return {
        "skipped_files": count_skipped(skipped),
        "skipped_file_ids": skipped,
        "excluded_in_preparation": count_exclusions(save_folder),
        "skipped_in_calibration": calibration,
    }


def save_end_of_stage(checkpointer, brain):
    """Checkpoint the final step of a stage and keep only it.

    A stage interrupted after training (e.g. while materialising or exporting)
    then recovers the finished weights, not an earlier checkpoint's.

    Arguments
    ---------
    checkpointer : speechbrain.utils.checkpoints.Checkpointer
        The stage's checkpointer.
    brain : speechbrain.Brain
        The stage's Brain (its optimizer step goes into the meta data).
    """
    checkpointer.save_and_keep_only(
        meta={"step": brain.optimizer_step, "end_of_stage": True}, num_to_keep=1
    )
