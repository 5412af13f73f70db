"""The stages of a distillation run (docs/design.md section 3), resumable, DDP-aware.

1. layer groups: given in the yaml, or found by similarity + clustering on a
   calibration subset (SKILL); written to ``<output>/layer_analysis``;
2. distill + prune (hard-concrete gates, Lagrangian), step-interval checkpoints;
3. materialise the pruned student (physically smaller tensors);
4. final distillation without the sparsity penalty;
5. export: the student directory (loadable with one call), a report, and the
   ``export`` formats (:mod:`speechbrain_skill.export`: Hugging Face compact
   and stock, SpeechBrain interface, ONNX), each with a model card.

Each stage leaves ``<output>/stages/<stage>.json`` when it finishes; a re-run
skips finished stages, and an unfinished one resumes from its last checkpoint
(optimizers, schedulers, gates, multipliers, step counter and data position).
Methods without pruning (DistilHuBERT) skip stages 2-3.
"""

import json
import logging
import os
import shlex
import sys
from pathlib import Path

import speechbrain as sb
import torch
from speechbrain.utils.distributed import if_main_process, run_on_main

from speechbrain_skill.data.dataio import (
    SkipBadAudioCollate,
    make_audio_dataloader,
    make_audio_dataset,
    make_dynamic_batch_sampler,
)
from speechbrain_skill.data.manifests import count_exclusions
from speechbrain_skill.distillation.brains import (
    DistillationBrain,
    PruningDistillationBrain,
)
from speechbrain_skill.distillation.lagrangian import validate_target_sparsity
from speechbrain_skill.distillation.report import write_report
from speechbrain_skill.distillation.targets import default_student_layers
from speechbrain_skill.layer_groups.clustering import validate_k
from speechbrain_skill.layer_groups.groups_file import load_groups, validate_groups
from speechbrain_skill.training.batch_skipping import count_skipped, merge_skipped
from speechbrain_skill.training.checkpoints import CompleteCheckpointer
from speechbrain_skill.training.modules import unwrap
from speechbrain_skill.training.progress import stage_banner

logger = logging.getLogger(__name__)


def _read_json(path):
    return json.loads(Path(path).read_text())


def _write_json(path, content):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(content, indent=2, default=str) + "\n")
    os.replace(tmp, path)


class DistillationPipeline:
    """Run the stages of a SKILL / DPHuBERT / DistilHuBERT recipe from its hparams.

    Arguments
    ---------
    hparams : dict
        The loaded recipe yaml (see ``recipes/LibriSpeech/distillation/hparams``).
    run_opts : dict
        SpeechBrain run options (device, precision, DDP, checkpoint interval).

    The constructor validates the configuration, so bad values fail before any
    data preparation or training.
    """

    def __init__(self, hparams, run_opts):
        self.hparams = hparams
        self.run_opts = run_opts
        self.output = Path(hparams["output_folder"])
        self.teacher = hparams["teacher"]
        self.num_states = self.teacher.num_hidden_states
        self.validate()

    # ------------------------------------------------------------ validation
    def validate(self):
        """Check the configuration against the teacher; clear errors, no training."""
        hp = self.hparams
        if hp.get("prune", True):
            validate_target_sparsity(hp["target_sparsity"])
        if hp.get("groups"):
            validate_groups(hp["groups"], self.num_states)
        else:
            validate_k(hp["num_groups"], self.num_states)
        num_student_states = unwrap(hp["student"]).num_hidden_states
        for layer in hp.get("student_layers") or []:
            if not 0 <= int(layer) < num_student_states:
                raise ValueError(
                    f"student_layers has index {layer}, but the student has "
                    f"{num_student_states} hidden states (0..{num_student_states - 1})."
                )
        for key in ("max_batch_seconds", "max_crop_seconds"):
            if hp.get(key) is not None and float(hp[key]) <= 0:
                raise ValueError(f"{key} must be positive, got {hp[key]}.")
        # An auxiliary loss may depend on the student (e.g. the enhancement head).
        check = getattr(hp.get("auxiliary_loss"), "validate_student", None)
        if check is not None:
            check(unwrap(hp["student"]))

    # ------------------------------------------------------------ helpers
    def make_heads(self, student_layers):
        """The target heads, sized from the teacher."""
        return self.hparams["make_heads"](
            student_layers=student_layers, input_dim=self.teacher.config.hidden_size
        )

    def stage_file(self, stage):
        """Path of the marker a finished stage leaves."""
        return self.output / "stages" / f"{stage}.json"

    def finished(self, stage):
        """The summary of a finished stage, or None."""
        path = self.stage_file(stage)
        return _read_json(path) if path.is_file() else None

    def mark_finished(self, stage, summary):
        """Record a finished stage (main process only)."""
        if if_main_process():
            _write_json(self.stage_file(stage), summary)
        sb.utils.distributed.ddp_barrier()

    def datasets(self):
        """Train (random crops, dynamic batches) and validation sets + loader kwargs."""
        hp = self.hparams
        train = make_audio_dataset(
            hp["train_csv"],
            max_crop_seconds=hp["max_crop_seconds"],
            random_crop=True,
            min_duration=hp["min_duration"],
            max_duration=hp["max_duration"],
            warn_fraction=hp["duration_filter_warn_fraction"],
        )
        valid = make_audio_dataset(
            hp["valid_csv"],
            max_crop_seconds=hp["valid_max_seconds"],
            random_crop=False,
            sort="ascending",
            max_utterances=hp["valid_max_utterances"],
        )
        sampler = make_dynamic_batch_sampler(
            train,
            max_batch_seconds=hp["max_batch_seconds"],
            num_buckets=hp["num_buckets"],
            shuffle=True,
            seed=hp["seed"],
            max_crop_seconds=hp["max_crop_seconds"],
        )
        collate = SkipBadAudioCollate()
        train_kwargs = dict(
            batch_sampler=sampler, collate_fn=collate, num_workers=hp["num_workers"]
        )
        valid_kwargs = dict(
            batch_size=hp["valid_batch_size"],
            collate_fn=collate,
            num_workers=hp["num_workers"],
        )
        return train, valid, train_kwargs, valid_kwargs

    # ------------------------------------------------------------ stage 1
    def layer_groups(self):
        """Groups of teacher layers and the student layer for each (stage 2-3)."""
        hp = self.hparams
        if hp.get("groups"):
            groups = validate_groups(hp["groups"], self.num_states)
            source = "configuration"
        else:
            analysis_dir = self.output / "layer_analysis"
            settings = {
                "teacher": str(hp["teacher_source"]),
                "k": hp["num_groups"],
                "linkage": hp["linkage"],
                "measure": hp["similarity_measure"],
                "calibration_utterances": hp["calibration_utterances"],
                "calibration_csv": str(hp["calibration_csv"]),
            }
            done = self.finished("layer_groups")
            if not done or done.get("settings") != settings:
                run_on_main(self._run_layer_analysis, args=(analysis_dir, settings))
            groups = load_groups(analysis_dir / "groups.json", self.num_states)
            source = "clustering"
        student_layers = hp.get("student_layers") or default_student_layers(groups)
        if len(student_layers) != len(groups):
            raise ValueError(
                f"student_layers has {len(student_layers)} entries for "
                f"{len(groups)} groups."
            )
        return groups, [int(layer) for layer in student_layers], source

    def _run_layer_analysis(self, analysis_dir, settings):
        from speechbrain_skill.layer_groups.analysis import run_layer_analysis

        hp = self.hparams
        loader = make_audio_dataloader(
            hp["calibration_csv"],
            batch_size=hp["calibration_batch_size"],
            max_utterances=hp["calibration_utterances"],
            seed=hp["seed"],
            max_seconds=hp["calibration_max_seconds"],
        )
        result = run_layer_analysis(
            self.teacher,
            loader,
            analysis_dir,
            k=hp["num_groups"],
            linkage=hp["linkage"],
            measure=hp["similarity_measure"],
            teacher_name=str(hp["teacher_source"]),
            max_frames_per_utterance=hp["max_frames_per_utterance"],
            seed=hp["seed"],
            device=self.run_opts.get("device", "cpu") or "cpu",
            progress=not self.run_opts.get("noprogressbar", False),
            metadata={"manifest": str(hp["calibration_csv"])},
        )
        print(result.summary())
        _write_json(
            self.stage_file("layer_groups"),
            {"settings": settings, "groups": result.groups},
        )

    # ------------------------------------------------------------ stages 2-4
    def _stage_hparams(self, prefix, history_path):
        hp = self.hparams
        stage = dict(hp)
        stage.update(
            max_steps=hp[f"{prefix}_steps"],
            opt_class=hp[f"{prefix}_opt_class"],
            lr_annealing=hp[f"{prefix}_lr_annealing"],
            history_path=str(history_path),
            stage_name=prefix,
        )
        return stage

    def _fit(self, brain_class, prefix, modules, recoverables, groups):
        hp = self.hparams
        stage_dir = self.output / prefix
        counter = hp[f"{prefix}_epoch_counter"]
        checkpointer = CompleteCheckpointer(
            stage_dir / "checkpoints",
            recoverables={
                **recoverables,
                "lr_annealing": hp[f"{prefix}_lr_annealing"],
                "counter": counter,
            },
        )
        stage_hparams = self._stage_hparams(prefix, stage_dir / "history.jsonl")
        stage_hparams["groups"] = groups
        brain = brain_class(
            modules=modules,
            hparams=stage_hparams,
            run_opts=self.run_opts,
            checkpointer=checkpointer,
        )
        train, valid, train_kwargs, valid_kwargs = self.datasets()
        brain.fit(
            counter,
            train,
            valid,
            train_loader_kwargs=train_kwargs,
            valid_loader_kwargs=valid_kwargs,
        )
        # A last checkpoint at the final step, so that a crash after this point
        # resumes with the finished weights rather than the last epoch's.
        checkpointer.save_and_keep_only(
            meta={"step": brain.optimizer_step, "end_of_stage": True}, num_to_keep=1
        )
        return brain

    def distill_and_prune(self, groups, student_layers):
        """Stage 2: joint distillation and structured pruning."""
        hp = self.hparams
        student = hp["student"]
        heads = self.make_heads(student_layers)
        lagrangian = hp["lagrangian"]
        extra = self.hparams.get("extra_modules") or {}
        modules = {
            "teacher": self.teacher,
            "student": student,
            "heads": heads,
            "lagrangian": lagrangian,
            **extra,
        }
        brain = self._fit(
            PruningDistillationBrain,
            "prune",
            modules,
            {"student": student, "heads": heads, "lagrangian": lagrangian, **extra},
            groups,
        )
        student = unwrap(brain.modules.student)
        with torch.no_grad():
            expected = float(student.expected_sparsity())
        return brain, student, heads, expected

    def materialize(self, student, heads):
        """Stage 3: the physically smaller student, saved with its heads."""
        pruned_dir = self.output / "pruned_student"

        def _save():
            pruned = unwrap(student).eval().prune()
            modules = {"heads": heads, **(self.hparams.get("extra_modules") or {})}
            self.hparams["save_student"](pruned, pruned_dir, modules=modules)

        run_on_main(_save)
        return pruned_dir

    def final_distill(self, student_dir, groups, student_layers):
        """Stage 4: distil the (pruned) student without the sparsity penalty."""
        hp = self.hparams
        student = hp["load_student"](student_dir)
        heads = self.make_heads(student_layers)
        heads_file = Path(student_dir) / "heads.ckpt"
        if heads_file.is_file():
            heads.load_state_dict(torch.load(heads_file, map_location="cpu"))
        self._load_extra_modules(student_dir)
        extra = hp.get("extra_modules") or {}
        modules = {"teacher": self.teacher, "student": student, "heads": heads, **extra}
        recoverables = {"student": student, "heads": heads, **extra}
        brain = self._fit(DistillationBrain, "final", modules, recoverables, groups)
        return brain, unwrap(brain.modules.student), unwrap(brain.modules.heads)

    # ------------------------------------------------------------ run all
    def banner(self, name, detail=""):
        """Announce the next stage of the run (see :func:`stage_banner`)."""
        names = ["layer groups", "final distillation", "export"]
        if self.hparams.get("prune", True):
            names[1:1] = ["distill + prune", "materialise"]
        stage_banner(names.index(name) + 1, len(names), name, detail)

    def run(self):
        """Run (or resume) every stage and return the report dictionary."""
        hp = self.hparams
        # The training data first: a filter that leaves nothing stops here.
        train = self.datasets()[0]
        self.banner("layer groups")
        groups, student_layers, source = self.layer_groups()
        logger.info(
            "Teacher layer groups (%s): %s -> student layers %s",
            source,
            groups,
            student_layers,
        )
        summary = {
            "groups": groups,
            "groups_source": source,
            "student_layers": student_layers,
            "duration_filter": train.duration_filter,
        }
        if hp.get("prune", True):
            pruned_dir = self.output / "pruned_student"
            done = self.finished("prune")
            if done is None:
                self.banner("distill + prune", f"{hp['prune_steps']} steps")
                brain, student, heads, expected = self.distill_and_prune(
                    groups, student_layers
                )
                self.banner("materialise")
                self.materialize(student, heads)
                done = {
                    "expected_sparsity": expected,
                    "skipped_files": brain.sync_skipped(),
                }
                self.mark_finished("prune", done)
            summary["expected_sparsity_after_pruning"] = done["expected_sparsity"]
            skipped = done["skipped_files"]
            student_dir = pruned_dir
        else:
            student_dir = self.output / "initial_student"
            skipped = {}
            run_on_main(self._save_initial_student, args=(student_dir, student_layers))
        done = self.finished("final")
        if done is None:
            self.banner("final distillation", f"{hp['final_steps']} steps")
            brain, student, heads = self.final_distill(
                student_dir, groups, student_layers
            )
            stats = brain.last_valid_stats
            done = {
                "valid_loss": stats.get("loss"),
                "valid_fit": {k: stats.get(k) for k in ("mean_cosine", "mean_l1")},
                "skipped_files": brain.sync_skipped(),
            }
            self.banner("export", str(hp["export_folder"]))
            run_on_main(self._export, args=(student, heads))
            self.mark_finished("final", done)
        summary.update(
            final_valid_loss=done["valid_loss"],
            final_valid_fit=done.get("valid_fit"),
        )
        summary.update(command=shlex.join(["python", *sys.argv]), training=self.facts())
        summary.update(self.data_losses(merge_skipped(skipped, done["skipped_files"])))
        report = {}
        if if_main_process():
            report = write_report(self.output, hp, summary)
            # Hugging Face, SpeechBrain and ONNX exports with their model cards.
            if hp.get("export") is not None:
                hp["export"](hp["export_folder"])
        sb.utils.distributed.ddp_barrier()
        return report

    def facts(self):
        """What the model card says about the run: method, data, steps."""
        hp = self.hparams
        steps = {"final": hp.get("final_steps")}
        method = "distillation of teacher layer groups"
        if hp.get("prune", True):
            steps = {"distill + prune": hp.get("prune_steps"), **steps}
            method += " + structured pruning (hard-concrete gates, Lagrangian)"
        return {
            "experiment": hp.get("experiment_name"),
            "method": method,
            "data": hp.get("train_splits") or hp.get("train_csv"),
            "steps": steps,
        }

    def data_losses(self, skipped):
        """Every file the run could not use, for the report (distinct files).

        Arguments
        ---------
        skipped : dict
            Reason -> utterance ids skipped in training and validation (all
            processes, all stages).

        Returns
        -------
        dict
            ``skipped_files`` (counts), ``skipped_file_ids``,
            ``excluded_in_preparation`` and ``skipped_in_calibration`` (counts).
        """
        groups_file = self.output / "layer_analysis" / "groups.json"
        calibration = {}
        if not self.hparams.get("groups") and groups_file.is_file():
            metadata = _read_json(groups_file).get("metadata", {})
            calibration = count_skipped(metadata.get("skipped_files", {}))
        return {
            "skipped_files": count_skipped(skipped),
            "skipped_file_ids": skipped,
            "excluded_in_preparation": count_exclusions(self.hparams["save_folder"]),
            "skipped_in_calibration": calibration,
        }

    def _save_initial_student(self, student_dir, student_layers):
        if (Path(student_dir) / "config.json").is_file():
            return
        heads = self.make_heads(student_layers)
        self.hparams["save_student"](
            unwrap(self.hparams["student"]), student_dir, modules={"heads": heads}
        )

    def _export(self, student, heads):
        modules = {"heads": heads, **(self.hparams.get("extra_modules") or {})}
        self.hparams["save_student"](
            student.eval(), self.hparams["export_folder"], modules=modules
        )

    def _load_extra_modules(self, directory):
        """Restore extra modules saved beside a student (``<name>.ckpt``), if any."""
        for name, module in (self.hparams.get("extra_modules") or {}).items():
            path = Path(directory) / f"{name}.ckpt"
            if path.is_file():
                unwrap(module).load_state_dict(torch.load(path, map_location="cpu"))
