#!/usr/bin/env python3
"""Distil (and prune) a speech SSL teacher: SKILL, DPHuBERT, DistilHuBERT, ...

Usage::

    python train.py hparams/skill_wavlm.yaml --data_folder=/data/LibriSpeech
    torchrun --nproc_per_node=4 train.py hparams/skill_wavlm.yaml --data_folder=...

Stages: data preparation; layer groups (given in the yaml, or found by layer
similarity + clustering of the teacher on a calibration subset);
distillation + structured pruning; materialisation of the pruned student;
final distillation; export and report. Recipes without pruning
(DistilHuBERT, RobustDistiller) distil a small student in the final stage.

The stages are objects (``speechbrain_skill/distillation/flow.py``); their
results (the layer groups, the student) pass from one to the next in memory.
Each stage records in ``<output_folder>/stages`` a fingerprint of every
resolved setting of the run except those it declares it ignores, and of its
inputs (previous stage, teacher weights, manifests). A rerun in the same
folder skips unchanged stages, resumes an unfinished one from its
checkpoints, and recomputes a stage whose settings or inputs changed
together with every later stage (``--on_stale=stop`` stops instead and names
the change).
"""

import json
import shlex
import sys
from pathlib import Path

import speechbrain as sb
from hyperpyyaml import load_hyperpyyaml
from librispeech_prepare import prepare_librispeech
from speechbrain.utils.distributed import if_main_process, run_on_main

from speechbrain_skill.data.corruption import add_corrupted_copy
from speechbrain_skill.data.dataio import make_audio_dataset, make_dynamic_batch_sampler
from speechbrain_skill.distillation import flow, stages
from speechbrain_skill.distillation.brains import (
    DistillationBrain,
    PruningDistillationBrain,
)
from speechbrain_skill.distillation.report import (
    describe_loss,
    format_summary,
    write_report,
)
from speechbrain_skill.layer_groups.groups_file import load_groups
from speechbrain_skill.training.batch_skipping import merge_skipped
from speechbrain_skill.training.checks import read_settings
from speechbrain_skill.training.command_line import parse_recipe_arguments
from speechbrain_skill.training.distributed import end_process_group
from speechbrain_skill.training.modules import unwrap
from speechbrain_skill.training.run_lock import lock_output_folder
from speechbrain_skill.training.stage_flow import Stage, StageFlow, resolved_settings
from speechbrain_skill.training.stage_records import (
    StageRecords,
    file_fingerprint,
    module_fingerprint,
)


def dataio_prepare(hparams):
    """Training set (random crops, dynamic batches) and validation set."""
    train_data = make_audio_dataset(
        hparams["train_csv"],
        max_crop_seconds=hparams["max_crop_seconds"],
        random_crop=True,
        min_duration=hparams["min_duration"],
        max_duration=hparams["max_duration"],
        warn_fraction=hparams["duration_filter_warn_fraction"],
    )
    # Robust mode: the loader workers corrupt what the student hears (issue 26).
    add_corrupted_copy(train_data, hparams["student_input_transform"])
    valid_data = make_audio_dataset(
        hparams["valid_csv"],
        max_crop_seconds=hparams["valid_max_seconds"],
        random_crop=False,
        sort="ascending",
        max_utterances=hparams["valid_max_utterances"],
    )
    sampler = make_dynamic_batch_sampler(
        train_data,
        max_batch_seconds=hparams["max_batch_seconds"],
        num_buckets=hparams["num_buckets"],
        shuffle=True,
        seed=hparams["seed"],
        max_crop_seconds=hparams["max_crop_seconds"],
    )
    return dict(
        train_set=train_data,
        valid_set=valid_data,
        train_loader_kwargs=dict(
            batch_sampler=sampler, **hparams["train_dataloader_opts"]
        ),
        valid_loader_kwargs=hparams["valid_dataloader_opts"],
    )


def layer_groups_stage(hparams, run_opts):
    """Layer groups: given in the yaml, or similarity + clustering of the teacher."""
    teacher = hparams["teacher"]
    clustering = not hparams["groups"]
    folder = hparams.get("layer_analysis_folder")

    def validated(summary):
        groups, layers = stages.configured_groups(
            summary["groups"], summary["student_layers"], teacher.num_hidden_states
        )
        return {**summary, "groups": groups, "student_layers": layers}

    def run():
        groups = hparams["groups"]
        if clustering:
            run_on_main(
                stages.find_layer_groups,
                kwargs={
                    "teacher": teacher,
                    "folder": folder,
                    "calibration_csv": hparams["calibration_csv"],
                    "num_groups": hparams["num_groups"],
                    "linkage": hparams["linkage"],
                    "measure": hparams["similarity_measure"],
                    "minibatch_size": hparams["similarity_minibatch_size"],
                    "utterances": hparams["calibration_utterances"],
                    "batch_size": hparams["calibration_batch_size"],
                    "max_seconds": hparams["calibration_max_seconds"],
                    "max_frames_per_utterance": hparams["max_frames_per_utterance"],
                    "seed": hparams["seed"],
                    "teacher_name": str(hparams["teacher_source"]),
                    "device": flow.stage_device(run_opts),
                    "progress": not run_opts["noprogressbar"],
                },
            )
            groups = load_groups(Path(folder) / "groups.json")
        result = validated(
            {"groups": groups, "student_layers": hparams["student_layers"]}
        )
        result["source"] = "clustering" if clustering else "configuration"
        return result, result

    return Stage(
        "layer_groups",
        run,
        validated,
        flow.IGNORE["layer_groups"],
        ("teacher", "calibration_csv") if clustering else ("teacher",),
        [folder] if clustering else [],
        title="layer groups",
    )


def initial_student(hparams, groups):
    """The yaml's student with new heads for ``groups`` (taken out of ``hparams``).

    Popped, so that once the stages are done with it nothing keeps it (or the
    device memory it holds) alive.
    """
    heads = hparams["heads"](
        student_layers=groups["student_layers"],
        input_dim=hparams["teacher"].config.hidden_size,
    )
    return flow.StudentParts(hparams.pop("student"), heads, hparams["extra_modules"])


def prune_stage(hparams, run_opts, fit_data):
    """Distillation + structured pruning (hard-concrete gates, Lagrangian)."""
    objects = {
        "opt_class": hparams["prune_opt_class"],
        "hparams": hparams["prune_hparams"],
        "epoch_counter": hparams["prune_epoch_counter"],
        "checkpointer": hparams["prune_checkpointer"],
        "modules": {"teacher": hparams["teacher"], "lagrangian": hparams["lagrangian"]},
    }
    return flow.training_stage(
        "prune",
        PruningDistillationBrain,
        objects,
        run_opts,
        fit_data,
        detail=f"{hparams['prune_steps']} steps",
        title="distill + prune",
    )


def materialise_stage(hparams):
    """The pruned student with physically smaller tensors, saved and passed on.

    The pruning stage's state (its checkpointer's recoverables, the gated
    student) is released here, before the final stage.
    """
    folder = hparams["pruned_student_folder"]

    def run(student):
        model = unwrap(student.ready().model).eval().prune()
        pruned = flow.StudentParts(model, student.heads, student.extra_modules)
        run_on_main(
            stages.save_student_folder,
            args=[
                folder,
                model,
                pruned.heads,
                pruned.extra_modules,
                hparams["save_student"],
            ],
        )
        flow.release_brain(hparams["prune_checkpointer"], keep=())
        return pruned, {}

    def load(summary, student):
        model = stages.load_student_folder(
            folder, student.heads, student.extra_modules, hparams["load_student"]
        )
        flow.release_brain(hparams["prune_checkpointer"], keep=())
        return flow.StudentParts(model, student.heads, student.extra_modules)

    return Stage(
        "materialise",
        run,
        load,
        flow.IGNORE["materialise"],
        outputs=[folder],
        title="materialise",
    )


def final_stage(hparams, run_opts, fit_data):
    """Final distillation of the (pruned or small) student, no sparsity penalty.

    Without pruning, the initial student is saved to ``initial_student_folder``
    on the first run and read back from there on a rerun (the same start).
    """
    initial_folder = None if hparams["prune"] else hparams["initial_student_folder"]

    def same_start(student):
        if initial_folder is None:
            return
        if (Path(initial_folder) / "config.json").is_file():
            student.model = stages.load_student_folder(
                initial_folder,
                student.heads,
                student.extra_modules,
                hparams["load_student"],
            )
            return
        run_on_main(
            stages.save_student_folder,
            args=[
                initial_folder,
                student.model,
                student.heads,
                student.extra_modules,
                hparams["save_student"],
            ],
        )

    objects = {
        "opt_class": hparams["final_opt_class"],
        "hparams": hparams["final_hparams"],
        "epoch_counter": hparams["final_epoch_counter"],
        "checkpointer": hparams["final_checkpointer"],
        "modules": {"teacher": hparams["teacher"]},
    }
    return flow.training_stage(
        "final",
        DistillationBrain,
        objects,
        run_opts,
        fit_data,
        before_fit=same_start,
        outputs=[initial_folder] if initial_folder else [],
        detail=f"{hparams['final_steps']} steps",
        title="final distillation",
    )


def export_stage(hparams, write):
    """The student folder, the report (``write``), then the export formats.

    The report is written on every run, also when the stage is skipped.
    """
    folder = hparams["export_folder"]

    def run(groups, student):
        model = unwrap(student.ready().model).eval()
        run_on_main(
            stages.save_student_folder,
            args=[
                folder,
                model,
                student.heads,
                student.extra_modules,
                hparams["save_student"],
            ],
        )
        report = write(model)
        if if_main_process() and hparams.get("export") is not None:
            hparams["export"](folder, student=model, report=report)
        return report, {}

    return Stage(
        "export",
        run,
        lambda summary, groups, student: write(None),
        flow.IGNORE["export"],
        outputs=[folder],
        detail=str(folder),
        title="export",
    )


def report_writer(hparams, stage_flow, groups, fit_data):
    """``write(student)``: the run's report next to the exported student."""

    def write(student):
        summaries = stage_flow.summaries
        summary = {
            "groups": groups["groups"],
            "groups_source": groups["source"],
            "student_layers": groups["student_layers"],
            "duration_filter": fit_data["train_set"].duration_filter,
            "final_valid_loss": summaries["final"]["valid_loss"],
            "final_valid_fit": summaries["final"]["valid_fit"],
            "loss_definition": describe_loss(
                hparams["distill_loss"], hparams["auxiliary_loss"]
            ),
            "command": shlex.join(["python", *sys.argv]),
            "training": stages.run_facts(
                hparams["experiment_name"],
                hparams["prune_steps"] if hparams["prune"] else None,
                hparams["final_steps"],
                hparams["train_splits"],
            ),
        }
        if hparams["prune"]:
            summary["expected_sparsity_after_pruning"] = summaries["prune"][
                "expected_sparsity"
            ]
        skipped = [
            summaries[name]["skipped_files"]
            for name in ("prune", "final")
            if name in summaries
        ]
        groups_file = None
        if groups["source"] == "clustering":
            groups_file = Path(hparams["layer_analysis_folder"]) / "groups.json"
        summary.update(
            stages.data_losses(
                merge_skipped(*skipped), hparams["save_folder"], groups_file
            )
        )
        if not if_main_process():
            return None
        report = write_report(
            hparams["output_folder"],
            hparams["export_folder"],
            hparams["teacher"],
            hparams["teacher_source"],
            hparams.get("target_sparsity") if hparams["prune"] else None,
            summary,
            student=student,
        )
        return json.loads(json.dumps(report, default=str))

    return write


if __name__ == "__main__":
    hparams_file, run_opts, overrides = parse_recipe_arguments(sys.argv[1:])
    # The plain settings are checked before the yaml builds (and maybe
    # downloads) the teacher: a bad value, data folder or run option fails now.
    settings = read_settings(hparams_file, overrides)
    stages.check_settings(settings, run_opts)
    sb.utils.distributed.ddp_init_group(run_opts)
    # One run per output folder: a second run stops here, naming the first.
    lock_output_folder(settings["output_folder"])
    with open(hparams_file, encoding="utf-8") as fin:
        hparams = load_hyperpyyaml(fin, overrides)
    sb.create_experiment_directory(
        experiment_directory=hparams["output_folder"],
        hyperparams_to_save=hparams_file,
        overrides=overrides,
    )
    teacher = hparams["teacher"]
    stages.check_models(
        teacher,
        hparams["student"],
        hparams["groups"],
        hparams.get("num_groups"),
        hparams["student_layers"],
        hparams["auxiliary_loss"],
    )

    # Data preparation (main process), then the datasets
    run_on_main(
        prepare_librispeech,
        kwargs={
            "data_folder": hparams["data_folder"],
            "save_folder": hparams["save_folder"],
            "tr_splits": hparams["train_splits"],
            "dev_splits": hparams["dev_splits"],
            "merge_name": "train.csv",
            "skip_prep": hparams["skip_prep"],
        },
    )
    fit_data = dataio_prepare(hparams)

    # The stages: each fingerprints every setting but those it ignores
    stage_flow = StageFlow(
        StageRecords(Path(hparams["output_folder"]) / "stages", hparams["on_stale"]),
        flow.run_settings(resolved_settings(hparams_file, overrides), run_opts),
        {
            "teacher": lambda: module_fingerprint(teacher),
            **{
                name: (lambda path=hparams[name]: file_fingerprint(path))
                for name in ("train_csv", "valid_csv", "calibration_csv")
                if name in hparams
            },
        },
        flow.planned_stages(hparams["prune"]),
    )
    groups = stage_flow.run(layer_groups_stage(hparams, run_opts))
    student = initial_student(hparams, groups)
    if hparams["prune"]:
        student = stage_flow.run(
            prune_stage(hparams, run_opts, fit_data), groups, student
        )
        student = stage_flow.run(materialise_stage(hparams), student)
    student = stage_flow.run(final_stage(hparams, run_opts, fit_data), groups, student)
    write = report_writer(hparams, stage_flow, groups, fit_data)
    report = stage_flow.run(export_stage(hparams, write), groups, student)
    if if_main_process():
        print(format_summary(report))  # last, so that it ends the run's output

    # DDP: leave the process group before exit (gloo can abort a rank at exit)
    end_process_group()
