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

Each stage records in ``<output_folder>/stages`` a fingerprint of the settings
that determine its output and of its inputs (previous stage, teacher
weights, manifests). A rerun in the same folder skips unchanged stages,
resumes an unfinished one from its checkpoints, and recomputes a stage whose
settings or inputs changed together with every later stage
(``--on_stale=stop`` stops instead and names the change).
"""

import shlex
import sys
from pathlib import Path

import speechbrain as sb
from hyperpyyaml import load_hyperpyyaml
from librispeech_prepare import prepare_librispeech
from speechbrain.utils.distributed import if_main_process, run_on_main

from speechbrain_skill.data.corruption import add_corrupted_copy
from speechbrain_skill.data.dataio import make_audio_dataset, make_dynamic_batch_sampler
from speechbrain_skill.distillation import stages
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
from speechbrain_skill.training.distributed import end_process_group
from speechbrain_skill.training.progress import stage_banner
from speechbrain_skill.training.run_lock import lock_output_folder
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
    train_loader_kwargs = dict(
        batch_sampler=sampler, **hparams["train_dataloader_opts"]
    )
    return train_data, valid_data, train_loader_kwargs


if __name__ == "__main__":
    hparams_file, run_opts, overrides = sb.parse_arguments(sys.argv[1:])
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
    train_data, valid_data, train_loader_kwargs = dataio_prepare(hparams)
    fit_data = dict(
        train_set=train_data,
        valid_set=valid_data,
        train_loader_kwargs=train_loader_kwargs,
        valid_loader_kwargs=hparams["valid_dataloader_opts"],
    )

    output = Path(hparams["output_folder"])
    records = StageRecords(output / "stages", on_stale=hparams["on_stale"])
    teacher_weights = module_fingerprint(teacher)
    manifests = {
        "train_csv": file_fingerprint(hparams["train_csv"]),
        "valid_csv": file_fingerprint(hparams["valid_csv"]),
    }
    run_settings = {
        "precision": run_opts["precision"],
        "grad_accumulation_factor": run_opts["grad_accumulation_factor"],
    }
    extra_modules = hparams["extra_modules"]

    stage_names = ["layer groups", "final distillation", "export"]
    if hparams["prune"]:
        stage_names[1:1] = ["distill + prune", "materialise"]

    def banner(name, detail=""):
        """Announce the next stage of the run."""
        stage_banner(stage_names.index(name) + 1, len(stage_names), name, detail)

    # 1. Layer groups: from the yaml, or similarity + clustering (SKILL)
    banner("layer groups")
    clustering = not hparams["groups"]
    inputs = {"teacher": teacher_weights}
    if clustering:
        inputs["calibration_csv"] = file_fingerprint(hparams["calibration_csv"])
    layer_groups = records.stage(
        "layer_groups",
        settings=hparams["layer_groups_settings"],
        inputs=inputs,
        outputs=[hparams["layer_analysis_folder"]] if clustering else [],
    )
    if not layer_groups.done:
        groups = hparams["groups"]
        if clustering:
            run_on_main(
                stages.find_layer_groups,
                kwargs={
                    "teacher": teacher,
                    "folder": hparams["layer_analysis_folder"],
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
                    "device": run_opts["device"] or "cpu",
                    "progress": not run_opts["noprogressbar"],
                },
            )
            groups = load_groups(Path(hparams["layer_analysis_folder"]) / "groups.json")
        groups, student_layers = stages.configured_groups(
            groups, hparams["student_layers"], teacher.num_hidden_states
        )
        layer_groups.finish(
            {
                "groups": groups,
                "student_layers": student_layers,
                "source": "clustering" if clustering else "configuration",
            }
        )
    groups = layer_groups.summary["groups"]
    student_layers = layer_groups.summary["student_layers"]
    summary = {
        "groups": groups,
        "groups_source": layer_groups.summary["source"],
        "student_layers": student_layers,
        "duration_filter": train_data.duration_filter,
    }
    heads = hparams["heads"](
        student_layers=student_layers, input_dim=teacher.config.hidden_size
    )

    if hparams["prune"]:
        # 2. Distillation + structured pruning (hard-concrete gates, Lagrangian)
        prune_stage = records.stage(
            "prune",
            settings={**hparams["prune_settings"], **run_settings},
            inputs={
                "layer_groups": layer_groups.fingerprint,
                "teacher": teacher_weights,
                **manifests,
            },
            outputs=[
                hparams["prune_checkpointer"].checkpoints_dir,
                hparams["prune_hparams"]["history_path"],
            ],
        )
        checkpointer = hparams["prune_checkpointer"]
        checkpointer.add_recoverables({"heads": heads, **extra_modules})
        if not prune_stage.done:
            banner("distill + prune", f"{hparams['prune_steps']} steps")
            brain = PruningDistillationBrain(
                groups,
                modules={
                    "teacher": teacher,
                    "student": hparams["student"],
                    "heads": heads,
                    "lagrangian": hparams["lagrangian"],
                    **extra_modules,
                },
                opt_class=hparams["prune_opt_class"],
                hparams=hparams["prune_hparams"],
                run_opts=run_opts,
                checkpointer=checkpointer,
            )
            brain.fit(hparams["prune_epoch_counter"], **fit_data)
            stages.save_end_of_stage(checkpointer, brain)
            prune_stage.finish(
                {
                    "expected_sparsity": float(
                        brain.student.expected_sparsity().detach()
                    ),
                    "skipped_files": brain.sync_skipped(),
                }
            )
        summary["expected_sparsity_after_pruning"] = prune_stage.summary[
            "expected_sparsity"
        ]
        skipped = [prune_stage.summary["skipped_files"]]

        # 3. Materialisation: the pruned student with physically smaller tensors
        materialise = records.stage(
            "materialise",
            settings={},
            inputs={"prune": prune_stage.fingerprint},
            outputs=[hparams["pruned_student_folder"]],
        )
        if not materialise.done:
            banner("materialise")
            checkpointer.recover_if_possible()  # the end-of-stage weights
            run_on_main(
                stages.materialise,
                args=[
                    hparams["pruned_student_folder"],
                    hparams["student"],
                    heads,
                    extra_modules,
                    hparams["save_student"],
                ],
            )
            materialise.finish({})
        student_folder = hparams["pruned_student_folder"]
        student_stage = materialise
    else:
        student_folder = hparams["initial_student_folder"]
        student_stage = layer_groups
        skipped = []

    # 4. Final distillation, without the sparsity penalty
    final_stage = records.stage(
        "final",
        settings={**hparams["final_settings"], **run_settings},
        inputs={
            "student": student_stage.fingerprint,
            "teacher": teacher_weights,
            **manifests,
        },
        outputs=[
            hparams["final_checkpointer"].checkpoints_dir,
            hparams["final_hparams"]["history_path"],
            *([] if hparams["prune"] else [student_folder]),
        ],
    )
    if not hparams["prune"] and not (Path(student_folder) / "config.json").is_file():
        run_on_main(
            stages.save_student_folder,
            args=[
                student_folder,
                hparams["student"],
                heads,
                extra_modules,
                hparams["save_student"],
            ],
        )
    final_heads = hparams["heads"](
        student_layers=student_layers, input_dim=teacher.config.hidden_size
    )
    final_student = stages.load_student_folder(
        student_folder, final_heads, extra_modules, hparams["load_student"]
    )
    checkpointer = hparams["final_checkpointer"]
    checkpointer.add_recoverables(
        {"student": final_student, "heads": final_heads, **extra_modules}
    )
    if not final_stage.done:
        banner("final distillation", f"{hparams['final_steps']} steps")
        brain = DistillationBrain(
            groups,
            modules={
                "teacher": teacher,
                "student": final_student,
                "heads": final_heads,
                **extra_modules,
            },
            opt_class=hparams["final_opt_class"],
            hparams=hparams["final_hparams"],
            run_opts=run_opts,
            checkpointer=checkpointer,
        )
        brain.fit(hparams["final_epoch_counter"], **fit_data)
        stages.save_end_of_stage(checkpointer, brain)
        stats = brain.last_valid_stats
        final_stage.finish(
            {
                "valid_loss": stats.get("loss"),
                "valid_fit": {k: stats.get(k) for k in ("mean_cosine", "mean_l1")},
                "skipped_files": brain.sync_skipped(),
            }
        )
    skipped.append(final_stage.summary["skipped_files"])

    # 5. Export: the student folder, the report, then the export formats
    export = records.stage(
        "export",
        settings={"export_formats": hparams.get("export_formats")},
        inputs={"final": final_stage.fingerprint},
        outputs=[hparams["export_folder"]],
    )
    if not export.done:
        banner("export", str(hparams["export_folder"]))
        checkpointer.recover_if_possible()  # the end-of-stage weights
        run_on_main(
            stages.export_student,
            args=[
                hparams["export_folder"],
                final_student,
                final_heads,
                extra_modules,
                hparams["save_student"],
            ],
        )

    # Report (every run): sizes, sparsity reached, groups, losses, lost data
    summary["final_valid_loss"] = final_stage.summary["valid_loss"]
    summary["final_valid_fit"] = final_stage.summary["valid_fit"]
    summary["loss_definition"] = describe_loss(
        hparams["distill_loss"], hparams["auxiliary_loss"]
    )
    summary["command"] = shlex.join(["python", *sys.argv])
    summary["training"] = stages.run_facts(
        hparams["experiment_name"],
        hparams["prune_steps"] if hparams["prune"] else None,
        hparams["final_steps"],
        hparams["train_splits"],
    )
    summary.update(
        stages.data_losses(
            merge_skipped(*skipped),
            hparams["save_folder"],
            None
            if hparams["groups"]
            else Path(hparams["layer_analysis_folder"]) / "groups.json",
        )
    )
    if if_main_process():
        report = write_report(
            output,
            hparams["export_folder"],
            teacher,
            hparams["teacher_source"],
            hparams.get("target_sparsity") if hparams["prune"] else None,
            summary,
        )
        # Hugging Face, SpeechBrain and ONNX exports with their model cards.
        if not export.done and hparams.get("export") is not None:
            hparams["export"](hparams["export_folder"])
        print(format_summary(report))  # last, so that it ends the run's output
    if not export.done:
        export.finish({})

    # DDP: leave the process group before exit (gloo can abort a rank at exit)
    end_process_group()
