"""SpeechBrain ``Brain`` classes for layer-to-layer distillation (optionally pruning).

:class:`DistillationBrain` serves every method (SKILL and DPHuBERT final
distillation, DistilHuBERT, RobustDistiller): frozen teacher -> targets (group
means), student -> heads -> predictions, padding-aware loss. Optional
``student_input_transform`` corrupts what the student hears (RobustDistiller)
and ``auxiliary_loss`` adds task-specific terms (enhancement head).

:class:`PruningDistillationBrain` adds hard-concrete gates and the expected
sparsity Lagrangian: three optimizers (main weights; gate ``log_alpha`` at
``reg_lr``; multipliers by gradient ascent), all checkpointed.

Learning rates: ONE warmup-then-linear-decay factor (``lr_annealing``) scales
every group, and the first step already runs at the warmup value, as in the
DPHuBERT reference (:func:`set_scheduled_lrs`); ``reg_lr_follows_schedule:
False`` keeps gates and multipliers at a constant ``reg_lr`` instead. One
gradient-norm clip covers all optimizers' groups together.

Modules expected in ``modules``: ``teacher`` (FrozenSSLTeacher), ``student``
(PrunableSSLEncoder), ``heads`` (LayerProjections / PredictionHeads), and for
pruning ``lagrangian`` (SparsityLagrangian). The teacher layer groups are
an argument (``groups``); ``opt_class`` is SpeechBrain's optimizer argument.
Hyperparameters used (a recipe passes one block per stage, e.g.
``prune_hparams``): ``distill_loss``, ``group_weights`` (optional),
``lr_annealing`` (a ``LinearWarmupScheduler`` or None), ``max_steps``,
``log_interval``, ``train_logger``, ``history_path``,
``student_input_transform`` and ``auxiliary_loss`` (optional),
``hidden_state_zero`` (optional, default ``transformer_input`` as for the
teacher and the student; the recipes set ``projection``, the reference's; see
:func:`~speechbrain_skill.lobes.student.model.check_hidden_state_zero`),
``bias_weight_decay`` (optional: weight decay of the biases, in their own
group), and for pruning ``gate_opt_class``, ``lambda_opt_class``,
``reg_lr_follows_schedule`` (optional, default True).
"""

import json
import logging
import os

import speechbrain as sb
import torch
from speechbrain.utils.distributed import if_main_process, rank_prefixed_message

from speechbrain_skill.data.corruption import CORRUPTED_KEY
from speechbrain_skill.distillation.losses import target_fit
from speechbrain_skill.distillation.targets import align_frames, group_targets
from speechbrain_skill.lobes.frames import lengths_to_mask
from speechbrain_skill.training.batch_skipping import (
    SkipsUnusableBatches,
    count_skipped,
    merge_skipped,
)
from speechbrain_skill.training.compile import compile_forward
from speechbrain_skill.training.eval_sharding import (
    all_reduce_eval_stats,
    shard_eval_loader_kwargs,
)
from speechbrain_skill.training.lr_schedule import set_scheduled_lrs
from speechbrain_skill.training.mixed_precision import (
    follow_training_precision,
    step_together,
)
from speechbrain_skill.training.modules import unwrap
from speechbrain_skill.training.progress import StepBudgetProgress

logger = logging.getLogger(__name__)


def host_floats(stats):
    """Statistics with every tensor read on the host in ONE transfer (for logging).

    Example
    -------
    >>> host_floats({"loss": torch.tensor(0.5), "lr": 1e-3, "l1_0": torch.tensor(2.0)})
    {'loss': 0.5, 'lr': 0.001, 'l1_0': 2.0}
    """
    keys = [key for key, value in stats.items() if torch.is_tensor(value)]
    if not keys:
        return dict(stats)
    values = torch.stack([stats[k].detach().double().reshape(()) for k in keys])
    floats = dict(zip(keys, values.cpu().tolist()))
    return {key: floats.get(key, value) for key, value in stats.items()}


class DistillationBrain(StepBudgetProgress, SkipsUnusableBatches, sb.Brain):
    """Distil a student from a frozen teacher's (grouped) hidden states.

    Arguments
    ---------
    groups : list of list of int
        Teacher layer groups; target ``g`` is the mean of the states in group
        ``g`` (one per head).
    *args, **kwargs
        Those of :class:`speechbrain.Brain` (``modules``, ``opt_class``,
        ``hparams``, ``run_opts``, ``checkpointer``).
    """

    def __init__(self, groups, *args, **kwargs):
        super().__init__(*args, **kwargs)
        follow_training_precision(self, kwargs.get("run_opts"), kwargs.get("hparams"))
        self.groups = [list(group) for group in groups]
        max_steps = getattr(self.hparams, "max_steps", None)
        if max_steps is not None and self.optimizer_step_limit is None:
            self.optimizer_step_limit = int(max_steps)
        self.skipped = {}
        self.trained_utterances = 0
        self.last_parts = {}
        self.fit_sums = {}
        self.history_path = getattr(self.hparams, "history_path", None)

    # ---------------------------------------------------------------- forward
    @property
    def student(self):
        """The student module, unwrapped from DDP."""
        return unwrap(self.modules.student)

    def compute_forward(self, batch, stage):
        """Teacher targets and student predictions for a batch."""
        if stage != sb.Stage.TRAIN:
            self.eval_forwards = getattr(self, "eval_forwards", 0) + 1
        batch = batch.to(self.device)
        wavs, wav_lens = batch.sig
        # The teacher stops at the deepest layer that a target needs.
        deepest = max(max(group) for group in self.groups)
        state_zero = getattr(self.hparams, "hidden_state_zero", "transformer_input")
        teacher_hidden, frame_lens = self.modules.teacher(
            wavs, wav_lens, num_layers=deepest, hidden_state_zero=state_zero
        )
        targets = group_targets(
            teacher_hidden,
            self.groups,
            getattr(self.hparams, "group_weights", None),
        )
        student_wavs = wavs
        transform = getattr(self.hparams, "student_input_transform", None)
        corrupted = getattr(batch, CORRUPTED_KEY, None)
        if corrupted is not None and stage == sb.Stage.TRAIN:
            student_wavs = corrupted.data  # corrupted in the loader workers
        elif transform is not None and stage == sb.Stage.TRAIN:
            student_wavs = transform(wavs, wav_lens)
        student_hidden, _ = self.modules.student(
            student_wavs, wav_lens, hidden_state_zero=state_zero
        )
        predictions = self.modules.heads(student_hidden)
        # Targets are compared in fp32 at least, never rounded to the
        # predictions' autocast dtype.
        if targets.dtype not in (torch.float32, torch.float64):
            targets = targets.float()
        predictions, targets = align_frames(predictions, targets)
        mask = lengths_to_mask(frame_lens, predictions.shape[2])
        return {
            "predictions": predictions,
            "targets": targets,
            "mask": mask,
            "student_wavs": student_wavs,
            "wavs": wavs,
            "wav_lens": wav_lens,
        }

    def compute_objectives(self, outputs, batch, stage):
        """Distillation loss (+ auxiliary loss when configured)."""
        loss, parts = self.hparams.distill_loss(
            outputs["predictions"].float(), outputs["targets"].float(), outputs["mask"]
        )
        parts["distill_loss"] = loss.detach()
        auxiliary = getattr(self.hparams, "auxiliary_loss", None)
        if auxiliary is not None:
            extra, extra_parts = auxiliary(self.modules, outputs, stage)
            loss = loss + extra
            parts.update(extra_parts)
        self.last_parts = parts
        if stage != sb.Stage.TRAIN:
            for key, value in target_fit(parts).items():
                self.fit_sums[key] = self.fit_sums.get(key, 0.0) + value
            self.fit_sums["batches"] = self.fit_sums.get("batches", 0) + 1
        return loss

    # ------------------------------------------------------------ optimizers
    def named_main_parameters(self):
        """(name, parameter) of the trainable weights but gates and multipliers."""
        named = [
            (f"student.{n}", p)
            for n, p in self.student.named_parameters()
            if not n.endswith("log_alpha")
        ]
        for name, module in self.modules.items():
            if name in ("student", "teacher", "lagrangian"):
                continue
            named.extend(
                (f"{name}.{n}", p)
                for n, p in module.named_parameters()
                if p.requires_grad
            )
        return named

    def main_parameters(self):
        """Trainable weights other than gates and multipliers."""
        return [p for _, p in self.named_main_parameters()]

    def main_parameter_groups(self):
        """Main weights; biases in their own group if ``bias_weight_decay`` is set.

        s3prl's DistilHuBERT optimizer decays every weight but no bias.
        """
        bias_decay = getattr(self.hparams, "bias_weight_decay", None)
        if bias_decay is None:
            return self.main_parameters()
        named = self.named_main_parameters()
        return [
            {"params": [p for n, p in named if not n.endswith("bias")]},
            {
                "params": [p for n, p in named if n.endswith("bias")],
                "weight_decay": float(bias_decay),
            },
        ]

    def _compile(self):
        """``--compile``: compile the forward of the teacher and student in place.

        SpeechBrain's own version wraps modules (changing their parameter
        names) and cannot catch failures, which happen at the first call;
        :func:`~speechbrain_skill.training.compile.compile_forward` keeps the
        modules and falls back to eager execution. ``--compile_module_keys``
        chooses other modules.
        """
        if not self.compile:
            return super()._compile()
        options = dict(
            mode=self.compile_mode,
            fullgraph=self.compile_using_fullgraph,
            dynamic=self.compile_using_dynamic_shape_tracing,
        )
        for name in self.compile_module_keys or ("teacher", "student"):
            if name not in self.modules:
                continue
            module = unwrap(self.modules[name])
            if hasattr(module, "compile_model"):  # the frozen teacher
                module.compile_model(name=name, **options)
            else:
                compile_forward(module, name=name, **options)

    def init_optimizers(self):
        """One optimizer for student weights and heads (the teacher is frozen)."""
        self.optimizer = self.opt_class(self.main_parameter_groups())
        self.optimizers_dict = {"main": self.optimizer}
        if self.checkpointer is not None:
            self.checkpointer.add_recoverable("optimizer", self.optimizer)

    def fit(self, *args, **kwargs):
        """:meth:`speechbrain.Brain.fit`, then a line from every process.

        Under DDP each process reports its own share, which shows that all of
        them trained (the other logs come from the main process only).
        """
        super().fit(*args, **kwargs)
        message = (
            f"training ended at optimizer step {self.optimizer_step}; "
            f"{self.trained_utterances} utterances trained on by this process "
            "in this run"
        )
        print(rank_prefixed_message(message), flush=True)

    def optimizers_step(self):
        """SpeechBrain's optimizer step, with ONE gradient-norm clip over everything.

        The references clip the norm of all trained parameters together
        (Lightning for DPHuBERT: weights, log_alpha and multipliers; s3prl
        for DistilHuBERT); SpeechBrain's default clips the first parameter
        group of each optimizer on its own. Under fp16 all optimizers skip a
        step with a non-finite gradient together
        (:func:`~speechbrain_skill.training.mixed_precision.step_together`).
        """
        valid = self.freeze_optimizers(self.optimizers_dict)
        for optimizer in valid.values():
            self.scaler.unscale_(optimizer)
        total_norm = torch.nn.utils.clip_grad_norm_(
            [
                p
                for optimizer in valid.values()
                for group in optimizer.param_groups
                for p in group["params"]
            ],
            self.max_grad_norm,
        )
        if not self.scaler.is_enabled() and self.skip_nonfinite_grads:
            self.check_gradients()
        step_together(self.scaler, valid.values(), total_norm)
        for optimizer in valid.values():
            optimizer.zero_grad(set_to_none=True)
        self.optimizer_step += 1

    def scheduled_optimizers(self):
        """The optimizers whose learning rates follow ``lr_annealing``."""
        return [self.optimizer]

    def apply_lr_schedule(self):
        """Set the learning rates of the next optimizer step (idempotent)."""
        set_scheduled_lrs(
            getattr(self.hparams, "lr_annealing", None),
            self.scheduled_optimizers(),
            self.optimizer_step + 1,
        )

    def on_fit_batch_start(self, batch, should_step):
        """Set the learning rates of the step this batch contributes to."""
        self.apply_lr_schedule()

    def on_fit_batch_end(self, batch, outputs, loss, should_step):
        """Count the utterances and log step-level statistics."""
        self.trained_utterances += int(outputs["wavs"].shape[0])
        if not should_step:
            return
        if self.optimizer_step % self.hparams.log_interval == 0:
            stats = {"loss": loss.detach(), **self.step_statistics()}
            self.log_step(host_floats(stats))

    def check_loss_isfinite(self, loss):
        """Defer SpeechBrain's non-finite loss check to the host copy of the loss.

        SpeechBrain checks the scaled loss on the device before ``backward``,
        a host sync every step; the same check runs in :meth:`update_average`
        on the loss that ``fit_batch`` already copied to the host (a loss is
        finite exactly when its scaled value is, unless the scale overflows,
        which the GradScaler handles itself).
        """
        self.loss_check_pending = True

    def update_average(self, loss, avg_loss):
        """SpeechBrain's running average, after the deferred non-finite check."""
        if getattr(self, "loss_check_pending", False):
            self.loss_check_pending = False
            super().check_loss_isfinite(loss)
        return super().update_average(loss, avg_loss)

    def make_dataloader(self, dataset, stage, ckpt_prefix="dataloader-", **kwargs):
        """SpeechBrain's loaders; under DDP each process validates its share."""
        if stage != sb.Stage.TRAIN:
            kwargs = shard_eval_loader_kwargs(dataset, kwargs)
        return super().make_dataloader(dataset, stage, ckpt_prefix, **kwargs)

    def step_statistics(self):
        """Statistics logged every ``log_interval`` steps (extended by subclasses)."""
        stats = dict(self.last_parts)
        stats["lr"] = self.optimizer.param_groups[0]["lr"]
        return stats

    def log_step(self, stats):
        """Write step statistics to the train logger and the history file.

        Called on every process: the SpeechBrain logger broadcasts from the main
        process, so calling it on the main process alone would deadlock DDP.
        """
        self.hparams.train_logger.log_stats(
            stats_meta={"step": self.optimizer_step}, train_stats=stats, verbose=False
        )
        if self.history_path and if_main_process():
            os.makedirs(os.path.dirname(self.history_path), exist_ok=True)
            with open(self.history_path, "a") as handle:
                handle.write(json.dumps({"step": self.optimizer_step, **stats}) + "\n")

    # ------------------------------------------------------------ stages
    def on_stage_start(self, stage, epoch=None):
        """Reset the per-stage sums of the fit to the targets."""
        super().on_stage_start(stage, epoch)
        self.fit_sums = {}
        self.eval_forwards = 0

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Log epoch statistics and checkpoint after validation."""
        if stage == sb.Stage.TRAIN:
            self.train_loss = stage_loss
            return
        stage_loss = self.merge_eval_shares(stage_loss)
        stats = {"loss": stage_loss, **self.epoch_statistics()}
        skipped = self.sync_skipped()  # all processes, distinct files
        if skipped:
            stats["skipped_files"] = sum(count_skipped(skipped).values())
        if stage == sb.Stage.VALID:
            self.hparams.train_logger.log_stats(
                stats_meta={"epoch": epoch, "step": self.optimizer_step},
                train_stats={"loss": getattr(self, "train_loss", float("nan"))},
                valid_stats=stats,
            )
            if self.checkpointer is not None:
                self.checkpointer.save_and_keep_only(
                    meta={"loss": stage_loss, "step": self.optimizer_step},
                    min_keys=["loss"],
                    num_to_keep=1,
                )
        self.last_valid_stats = stats

    def merge_eval_shares(self, stage_loss):
        """Whole-set validation loss and fit sums from every DDP process's share.

        A process whose whole share was unusable audio still runs one (silent)
        forward pass first: DDP's first evaluation forward broadcasts the
        modules' buffers, and the other processes wait for it.
        """
        if self.distributed_launch and not getattr(self, "eval_forwards", 0):
            with torch.no_grad():
                self.compute_forward(self.silent_batch(), sb.Stage.VALID)
        sums = {k: v for k, v in self.fit_sums.items() if k != "batches"}
        batches = self.fit_sums.get("batches", 0)
        loss, batches, sums = all_reduce_eval_stats(
            stage_loss, batches, sums, self.device
        )
        if batches:
            self.fit_sums = {**sums, "batches": batches}
        return loss

    def epoch_statistics(self):
        """Mean cosine and L1 to the targets over the stage (method-independent)."""
        batches = self.fit_sums.get("batches", 0)
        if not batches:
            return {}
        return {
            key: round(float(self.fit_sums[key]) / batches, 4)
            for key in ("mean_cosine", "mean_l1")
        }

    # ------------------------------------------------------------ checkpoint
    def _save(self, path):
        super()._save(path)
        extra = {"skipped": merge_skipped(self.skipped)}
        with open(f"{path}.skipped.json", "w") as handle:
            json.dump(extra, handle)

    def _recover(self, path, end_of_epoch):
        super()._recover(path, end_of_epoch)
        extra_path = f"{path}.skipped.json"
        if os.path.isfile(extra_path):
            with open(extra_path) as handle:
                skipped = json.load(handle)["skipped"]
            self.skipped = {reason: set(ids) for reason, ids in skipped.items()}


class PruningDistillationBrain(DistillationBrain):
    """Joint distillation and structured pruning (hard-concrete gates + Lagrangian)."""

    def compute_objectives(self, outputs, batch, stage):
        """Distillation loss plus the sparsity penalty in training."""
        loss = super().compute_objectives(outputs, batch, stage)
        expected = self.student.expected_sparsity()
        penalty, target = self.modules.lagrangian(expected, self.optimizer_step)
        self.last_parts.update(
            expected_sparsity=expected.detach(),
            target_sparsity=target,
            penalty=penalty.detach(),
        )
        if stage != sb.Stage.TRAIN:
            return loss
        return loss + penalty

    def init_optimizers(self):
        """Main weights, gate log_alpha (reg_lr) and multipliers (gradient ascent)."""
        super().init_optimizers()
        lagrangian = unwrap(self.modules.lagrangian)
        self.gate_optimizer = self.hparams.gate_opt_class(
            self.student.gate_parameters()
        )
        self.lambda_optimizer = self.hparams.lambda_opt_class(lagrangian.parameters())
        self.optimizers_dict.update(
            gates=self.gate_optimizer, lambdas=self.lambda_optimizer
        )
        if self.checkpointer is not None:
            self.checkpointer.add_recoverable("gate_optimizer", self.gate_optimizer)
            self.checkpointer.add_recoverable("lambda_optimizer", self.lambda_optimizer)

    def on_fit_batch_end(self, batch, outputs, loss, should_step):
        """Log, then draw the next step's gates.

        Their zeros reach the host during this step's copy of the loss, so
        the next forward pass needs no host sync of its own.
        """
        super().on_fit_batch_end(batch, outputs, loss, should_step)
        self.student.draw_gates_ahead()

    def fit(self, *args, **kwargs):
        """:meth:`DistillationBrain.fit`; the last draw ahead is dropped."""
        try:
            super().fit(*args, **kwargs)
        finally:
            self.student.next_draw = None

    def scheduled_optimizers(self):
        """Main weights and, by default (as the reference), gates and multipliers."""
        if getattr(self.hparams, "reg_lr_follows_schedule", True):
            return [self.optimizer, self.gate_optimizer, self.lambda_optimizer]
        return [self.optimizer]

    def step_statistics(self):
        """Add sparsity, target, multipliers and expected parameters."""
        stats = super().step_statistics()
        lagrangian = unwrap(self.modules.lagrangian)
        with torch.no_grad():
            stats["expected_params"] = self.student.expected_num_params()
        stats["lambda1"] = lagrangian.lambda1.detach()
        stats["lambda2"] = lagrangian.lambda2.detach()
        return stats

    def epoch_statistics(self):
        """Expected sparsity and multipliers at the end of an epoch."""
        lagrangian = unwrap(self.modules.lagrangian)
        with torch.no_grad():
            expected = float(self.student.expected_sparsity())
        return {
            **super().epoch_statistics(),
            "expected_sparsity": round(expected, 4),
            "target_sparsity": round(lagrangian.target_at(self.optimizer_step), 4),
        }
