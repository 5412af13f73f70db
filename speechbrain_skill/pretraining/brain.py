"""``HuBERTPretrainBrain``: masked prediction of frame cluster labels.

Each batch (frame-aligned crops with labels, see :mod:`~.collate`) is span
masked (:mod:`~.masking`); the Hugging Face WavLM replaces the masked frames of
its projected CNN features with its learned mask embedding, and the head
(:mod:`~.head`) predicts the cluster label of every frame; the loss is the
cross-entropy on the masked frames.

Expected ``modules``: ``wavlm`` (a Hugging Face ``WavLMModel`` / ``HubertModel``
with a mask embedding) and ``head`` (:class:`~.head.MaskedPredictionHead`).
Expected hparams: ``mask_prob``, ``mask_length``, ``min_masks``,
``unmasked_weight``, ``seed``, ``lr_annealing`` (a SpeechBrain
``LinearWarmupScheduler``), ``train_logger``, ``epoch_counter``.
"""

import logging

import speechbrain as sb
import torch

from speechbrain_skill.lobes.frames import (
    conv_output_lengths,
    lengths_to_mask,
    relative_to_absolute,
)
from speechbrain_skill.pretraining.export import export_pretrained
from speechbrain_skill.pretraining.head import masked_prediction_loss
from speechbrain_skill.pretraining.masking import compute_span_mask
from speechbrain_skill.training.batch_skipping import SkipsUnusableBatches
from speechbrain_skill.training.lr_schedule import set_scheduled_lrs
from speechbrain_skill.training.modules import unwrap

logger = logging.getLogger(__name__)


class StageMeter:
    """Frame-weighted loss and accuracies over one stage, plus skipped examples.

    Example
    -------
    >>> meter = StageMeter()
    >>> meter.summary()["acc_masked"]
    0.0
    """

    def __init__(self):
        self.loss_sum = 0.0
        self.masked = 0
        self.masked_correct = 0
        self.unmasked = 0
        self.unmasked_correct = 0
        self.skipped = 0

    def update(self, stats):
        """Add one batch's :class:`~.head.MaskedPredictionStats`."""
        self.loss_sum += float(stats.masked_loss.detach()) * stats.num_masked
        self.masked += stats.num_masked
        self.masked_correct += stats.masked_correct
        self.unmasked += stats.num_unmasked
        self.unmasked_correct += stats.unmasked_correct

    def summary(self):
        """Masked CE, masked / unmasked accuracy (%) and skipped count."""
        return {
            "loss": round(self.loss_sum / max(self.masked, 1), 4),
            "acc_masked": round(100.0 * self.masked_correct / max(self.masked, 1), 2),
            "acc_unmasked": round(
                100.0 * self.unmasked_correct / max(self.unmasked, 1), 2
            ),
            "masked_frames": self.masked,
            "skipped": self.skipped,
        }


class HuBERTPretrainBrain(SkipsUnusableBatches, sb.Brain):
    """SpeechBrain Brain for HuBERT-style pretraining of a Hugging Face model.

    Empty batches (all examples unusable) are skipped and counted; so are the
    individual bad examples reported in ``batch.skipped``. Validation and test
    draw their masks from a generator re-seeded at each stage start, so
    accuracies are comparable between epochs.

    Example
    -------
    >>> from speechbrain.nnet.schedulers import LinearWarmupScheduler
    >>> from transformers import WavLMModel
    >>> from speechbrain_skill.pretraining.collate import LabelledCropCollate
    >>> from speechbrain_skill.pretraining.head import MaskedPredictionHead
    >>> from speechbrain_skill.pretraining.labels import FrameLabels
    >>> from speechbrain_skill.pretraining.model import wavlm_pretraining_config
    >>> cfg = wavlm_pretraining_config(hidden_size=32, num_layers=1, num_heads=2,
    ...                                ffn_size=32, conv_channels=8, pos_conv_groups=4)
    >>> brain = HuBERTPretrainBrain(
    ...     modules={"wavlm": WavLMModel(cfg), "head": MaskedPredictionHead(32, 5, 8)},
    ...     opt_class=lambda params: torch.optim.AdamW(params, lr=1e-3),
    ...     hparams=dict(mask_prob=0.8, mask_length=5, min_masks=1,
    ...                  unmasked_weight=0.0, seed=0,
    ...                  lr_annealing=LinearWarmupScheduler(1e-3, 1, 10)),
    ...     run_opts={"device": "cpu"})
    >>> labels = FrameLabels({"a": torch.randint(5, (49,))}, num_clusters=5)
    >>> batch = LabelledCropCollate(labels)([{"id": "a", "sig": torch.randn(16000)}])
    >>> brain.on_fit_start()
    >>> brain.on_stage_start(sb.Stage.TRAIN)
    >>> loss = brain.fit_batch(batch)
    >>> brain.optimizer_step, brain.meter.masked > 0
    (1, True)
    """

    def on_fit_batch_start(self, batch, should_step):
        """Set the learning rate of the coming step (step 1 at the warmup value)."""
        set_scheduled_lrs(
            self.hparams.lr_annealing, [self.optimizer], self.optimizer_step + 1
        )

    def _model_config(self):
        return unwrap(self.modules.wavlm).config

    def compute_forward(self, batch, stage):
        """Mask, encode, score every frame against the cluster codebook."""
        batch = batch.to(self.device)
        wavs, wav_lens = batch.sig
        config = self._model_config()
        lengths = relative_to_absolute(wav_lens, wavs.shape[1]).to(self.device)
        frame_lens = conv_output_lengths(
            lengths, config.conv_kernel, config.conv_stride
        )
        max_frames = int(
            conv_output_lengths(
                torch.tensor([wavs.shape[1]]), config.conv_kernel, config.conv_stride
            )
        )
        generator = None if stage == sb.Stage.TRAIN else self.eval_generator
        mask = compute_span_mask(
            frame_lens.cpu(),
            max_frames,
            mask_prob=self.hparams.mask_prob,
            span_length=self.hparams.mask_length,
            min_masks=self.hparams.min_masks,
            generator=generator,
        ).to(self.device)
        attention_mask = None
        if bool((lengths < wavs.shape[1]).any()):
            attention_mask = lengths_to_mask(lengths, wavs.shape[1]).long()
        out = self.modules.wavlm(
            wavs, attention_mask=attention_mask, mask_time_indices=mask
        )
        logits = self.modules.head(out.last_hidden_state)
        valid = lengths_to_mask(frame_lens.clamp(max=max_frames), max_frames)
        return logits, mask, valid

    def compute_objectives(self, predictions, batch, stage):
        """Cross-entropy on masked frames; accuracies go to the stage meter."""
        logits, mask, valid = predictions
        labels, _ = batch.labels
        stats = masked_prediction_loss(
            logits,
            labels.to(logits.device).long(),
            mask,
            valid=valid,
            unmasked_weight=self.hparams.unmasked_weight,
        )
        self.meter.update(stats)
        return stats.loss

    def record_skipped(self, batch):
        """Count skipped examples in the stage meter."""
        self.meter.skipped += len(getattr(batch, "skipped", ()))

    def on_stage_start(self, stage, epoch=None):
        """Fresh meter; fixed mask seed for validation and test."""
        self.meter = StageMeter()
        self.eval_generator = torch.Generator().manual_seed(self.hparams.seed)

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Log the stage, checkpoint after validation, keep a summary."""
        stats = self.meter.summary()
        if stats["skipped"]:
            logger.warning("%s: %d examples skipped.", stage.name, stats["skipped"])
        if stage == sb.Stage.TRAIN:
            self.train_stats = stats
            return
        if stage == sb.Stage.VALID:
            self.valid_stats = stats
            self.hparams.train_logger.log_stats(
                stats_meta={
                    "epoch": epoch,
                    "steps": self.optimizer_step,
                    "lr": self.optimizer.param_groups[0]["lr"],
                },
                train_stats=getattr(self, "train_stats", None),
                valid_stats=stats,
            )
            if self.checkpointer is not None:
                self.checkpointer.save_and_keep_only(
                    meta={
                        "acc_masked": stats["acc_masked"],
                        "steps": self.optimizer_step,
                    },
                    num_to_keep=1,
                )
        if stage == sb.Stage.TEST:
            self.test_stats = stats
            self.hparams.train_logger.log_stats(
                stats_meta={"steps": self.optimizer_step}, test_stats=stats
            )

    def export(self, path, summary=None):
        """Write the encoder (without head) as a ``save_pretrained`` folder."""
        return export_pretrained(self.modules.wavlm, path, summary=summary)
