"""``TargetDistillBrain``: train a WavLM to predict precomputed teacher frames.

Used to distil a foreign encoder (Whisper, whose input is log-mel, not
waveform) into the WavLM architecture. Targets are hidden states of the
teacher computed once (:mod:`~.whisper_targets`); student hidden state
``student_layers[k]`` predicts teacher target ``k`` through a linear head. The
loss of each pair is DistilHuBERT's: L1 minus log-sigmoid of the cosine
similarity, on per-dimension standardised targets, summed over pairs and
averaged over frames. Student inputs may be span masked (the masked frames are
still predicted, so the student has to use context).

Expected ``modules``: ``wavlm`` (Hugging Face ``WavLMModel`` with a mask
embedding) and ``heads`` (:class:`TargetHeads`). Expected hparams:
``student_layers``, ``mask_prob``, ``mask_length``, ``min_masks``, ``seed``,
``lr_annealing``, ``train_logger``.
"""

import logging

import speechbrain as sb
import torch
import torch.nn.functional as F

from speechbrain_skill.lobes.frames import (
    conv_output_lengths,
    lengths_to_mask,
    relative_to_absolute,
)
from speechbrain_skill.pretraining.export import export_pretrained
from speechbrain_skill.pretraining.masking import compute_span_mask
from speechbrain_skill.training.batch_skipping import SkipsUnusableBatches
from speechbrain_skill.training.checks import ConfigurationError
from speechbrain_skill.training.lr_schedule import set_scheduled_lrs
from speechbrain_skill.training.modules import unwrap

logger = logging.getLogger(__name__)


class TargetHeads(torch.nn.Module):
    """One linear map per target, plus the targets' standardisation moments.

    Arguments
    ---------
    input_size : int
        Student width.
    target_size : int
        Teacher width.
    num_targets : int
        Number of (student layer, teacher layer) pairs.

    Example
    -------
    >>> heads = TargetHeads(4, 6, 2)
    >>> [y.shape for y in heads([torch.randn(1, 3, 4), torch.randn(1, 3, 4)])]
    [torch.Size([1, 3, 6]), torch.Size([1, 3, 6])]
    """

    def __init__(self, input_size, target_size, num_targets):
        super().__init__()
        self.maps = torch.nn.ModuleList(
            torch.nn.Linear(input_size, target_size) for _ in range(num_targets)
        )
        self.register_buffer("mean", torch.zeros(num_targets, target_size))
        self.register_buffer("std", torch.ones(num_targets, target_size))
        self.register_buffer("utterance_center", torch.zeros(num_targets, target_size))
        self.register_buffer("utterance_scale", torch.ones(num_targets, target_size))

    def set_moments(self, mean, std, utterance_mean=None, utterance_std=None):
        """Standardise targets with these ``(num_targets, target_size)`` moments.

        ``utterance_mean`` / ``utterance_std`` (the moments of the utterances'
        mean frames, :meth:`~.whisper_targets.FrameTargets.utterance_moments`)
        set the scale of the utterance-level loss, in standardised units.
        """
        self.mean.copy_(mean)
        self.std.copy_(std)
        if utterance_mean is not None:
            self.utterance_center.copy_((utterance_mean - mean) / std)
            self.utterance_scale.copy_(utterance_std / std)

    def normalize(self, targets):
        """Standardise ``(batch, frames, num_targets, target_size)`` targets."""
        return (targets - self.mean) / self.std

    def forward(self, hidden):
        """Predictions for a list of student hidden states, one per target."""
        return [m(h) for m, h in zip(self.maps, hidden)]


def distill_loss(prediction, target, valid):
    """DistilHuBERT's L1 - log sigmoid(cosine), averaged over valid frames.

    Arguments
    ---------
    prediction, target : torch.Tensor
        ``(batch, frames, width)``.
    valid : torch.Tensor
        Bool ``(batch, frames)``.

    Returns
    -------
    loss, l1, cosine : torch.Tensor
        Scalars (the last two detached).

    Example
    -------
    >>> x = torch.randn(2, 5, 3)
    >>> loss, l1, cos = distill_loss(x, x, torch.ones(2, 5, dtype=torch.bool))
    >>> round(float(l1), 4), round(float(cos), 4)
    (0.0, 1.0)
    """
    prediction, target = prediction[valid], target[valid]
    l1 = (prediction - target).abs().mean()
    cosine = F.cosine_similarity(prediction, target, dim=-1)
    loss = l1 - F.logsigmoid(cosine).mean()
    return loss, l1.detach(), cosine.mean().detach()


def utterance_loss(prediction, target, valid, center, scale):
    """:func:`distill_loss` on the utterances' mean frames, rescaled.

    The mean over an utterance's valid frames of the prediction and of the
    target, both centred and divided by the spread of utterance means
    (``center``, ``scale``: per dimension, in the units of ``target``), so
    that what stays constant over an utterance (the voice, the channel)
    weighs as much as the frame-level detail does in :func:`distill_loss`.

    Arguments
    ---------
    prediction, target : torch.Tensor
        ``(batch, frames, width)``.
    valid : torch.Tensor
        Bool ``(batch, frames)``.
    center, scale : torch.Tensor
        ``(width,)``.

    Returns
    -------
    loss, l1, cosine : torch.Tensor
        Scalars (the last two detached).

    Example
    -------
    >>> x, valid = torch.randn(2, 5, 3), torch.ones(2, 5, dtype=torch.bool)
    >>> loss, l1, cos = utterance_loss(x, x + 1.0, valid, torch.zeros(3), torch.ones(3))
    >>> round(float(l1), 4)
    1.0
    """
    weight = valid.unsqueeze(-1).to(prediction.dtype)
    count = weight.sum(1).clamp(min=1)
    pooled = [(x * weight).sum(1) / count for x in (prediction, target)]
    pooled = [(x - center) / scale for x in pooled]
    rows = torch.ones(len(valid), 1, dtype=torch.bool, device=valid.device)
    return distill_loss(pooled[0].unsqueeze(1), pooled[1].unsqueeze(1), rows)


def utterance_weights(weight, num_targets):
    """The utterance-level loss weight of each target: one number for all, or a list.

    Example
    -------
    >>> utterance_weights(0.1, 2), utterance_weights([0.5, 0], 2)
    ([0.1, 0.1], [0.5, 0.0])
    """
    if isinstance(weight, (int, float)):
        return [float(weight)] * num_targets
    if len(weight) != num_targets:
        raise ConfigurationError(
            f"utterance_weight needs one number per target ({num_targets}), "
            f"got {len(weight)}: {list(weight)}."
        )
    return [float(w) for w in weight]


class TargetDistillBrain(SkipsUnusableBatches, sb.Brain):
    """SpeechBrain Brain predicting precomputed teacher frames from waveforms.

    Example
    -------
    >>> from speechbrain.nnet.schedulers import LinearWarmupScheduler
    >>> from transformers import WavLMModel
    >>> from speechbrain_skill.pretraining.collate import LabelledCropCollate
    >>> from speechbrain_skill.pretraining.model import wavlm_pretraining_config
    >>> from speechbrain_skill.pretraining.whisper_targets import FrameTargets
    >>> cfg = wavlm_pretraining_config(hidden_size=32, num_layers=2, num_heads=2,
    ...                                ffn_size=32, conv_channels=8, pos_conv_groups=4)
    >>> brain = TargetDistillBrain(
    ...     modules={"wavlm": WavLMModel(cfg), "heads": TargetHeads(32, 6, 2)},
    ...     opt_class=lambda params: torch.optim.AdamW(params, lr=1e-3),
    ...     hparams=dict(student_layers=[1, 2], mask_prob=0.2, mask_length=5,
    ...                  min_masks=0, seed=0, utterance_weight=1.0,
    ...                  lr_annealing=LinearWarmupScheduler(1e-3, 1, 10)),
    ...     run_opts={"device": "cpu"})
    >>> targets = FrameTargets({"a": torch.randn(49, 2, 6)}, [2, 4])
    >>> batch = LabelledCropCollate(targets)([{"id": "a", "sig": torch.randn(16000)}])
    >>> brain.on_fit_start()
    >>> brain.on_stage_start(sb.Stage.TRAIN)
    >>> loss = brain.fit_batch(batch)
    >>> brain.optimizer_step, brain.meter["frames"]
    (1, 49)
    """

    @property
    def utterance_weights(self):
        """Weight of the utterance-level loss of each target."""
        return utterance_weights(
            self.hparams.utterance_weight, len(self.hparams.student_layers)
        )

    def on_fit_batch_start(self, batch, should_step):
        """Set the learning rate of the coming step."""
        set_scheduled_lrs(
            self.hparams.lr_annealing, [self.optimizer], self.optimizer_step + 1
        )

    def compute_forward(self, batch, stage):
        """Encode (masked in training), predict every target from its layer."""
        batch = batch.to(self.device)
        wavs, wav_lens = batch.sig
        config = unwrap(self.modules.wavlm).config
        lengths = relative_to_absolute(wav_lens, wavs.shape[1]).to(self.device)
        frame_lens = conv_output_lengths(
            lengths, config.conv_kernel, config.conv_stride
        )
        max_frames = int(
            conv_output_lengths(
                torch.tensor([wavs.shape[1]]), config.conv_kernel, config.conv_stride
            )
        )
        mask = None
        if stage == sb.Stage.TRAIN and self.hparams.mask_prob > 0:
            mask = compute_span_mask(
                frame_lens.cpu(),
                max_frames,
                mask_prob=self.hparams.mask_prob,
                span_length=self.hparams.mask_length,
                min_masks=self.hparams.min_masks,
            ).to(self.device)
        attention_mask = None
        if bool((lengths < wavs.shape[1]).any()):
            attention_mask = lengths_to_mask(lengths, wavs.shape[1]).long()
        out = self.modules.wavlm(
            wavs,
            attention_mask=attention_mask,
            mask_time_indices=mask,
            output_hidden_states=True,
        )
        hidden = [out.hidden_states[i] for i in self.hparams.student_layers]
        valid = lengths_to_mask(frame_lens.clamp(max=max_frames), max_frames)
        return self.modules.heads(hidden), valid

    def compute_objectives(self, predictions, batch, stage):
        """Sum over targets of the DistilHuBERT loss; stats to the meter."""
        predictions, valid = predictions
        targets, _ = batch.labels
        heads = unwrap(self.modules.heads)
        targets = heads.normalize(targets.to(self.device).float())
        frames = min(targets.shape[1], valid.shape[1])
        valid = valid[:, :frames]
        total = 0.0
        for k, prediction in enumerate(predictions):
            loss, l1, cosine = distill_loss(
                prediction[:, :frames], targets[:, :frames, k], valid
            )
            total = total + loss
            self.meter[f"l1_{k}"] += float(l1) * int(valid.sum())
            self.meter[f"cos_{k}"] += float(cosine) * int(valid.sum())
            weight = self.utterance_weights[k]
            if weight > 0:
                loss, l1, cosine = utterance_loss(
                    prediction[:, :frames],
                    targets[:, :frames, k],
                    valid,
                    heads.utterance_center[k],
                    heads.utterance_scale[k],
                )
                total = total + weight * loss
                self.meter[f"utt_l1_{k}"] += float(l1) * int(valid.sum())
        self.meter["loss"] += float(total.detach()) * int(valid.sum())
        self.meter["frames"] += int(valid.sum())
        return total

    def record_skipped(self, batch):
        """Count skipped examples."""
        self.meter["skipped"] += len(getattr(batch, "skipped", ()))

    def on_stage_start(self, stage, epoch=None):
        """Fresh meter."""
        self.meter = {"loss": 0.0, "frames": 0, "skipped": 0}
        for k in range(len(self.hparams.student_layers)):
            self.meter[f"l1_{k}"] = 0.0
            self.meter[f"cos_{k}"] = 0.0
            if self.utterance_weights[k] > 0:
                self.meter[f"utt_l1_{k}"] = 0.0

    def stage_summary(self):
        """Frame-weighted loss, L1 and cosine per target."""
        frames = max(self.meter["frames"], 1)
        return {
            k: (round(v / frames, 4) if k not in ("frames", "skipped") else v)
            for k, v in self.meter.items()
        }

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Log, checkpoint after validation, keep summaries."""
        stats = self.stage_summary()
        if stats["skipped"]:
            logger.warning("%s: %d examples skipped.", stage.name, stats["skipped"])
        if stage == sb.Stage.TRAIN:
            self.train_stats = stats
        elif stage == sb.Stage.VALID:
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
                    meta={"loss": stats["loss"], "steps": self.optimizer_step},
                    num_to_keep=1,
                )
        else:
            self.test_stats = stats
            self.hparams.train_logger.log_stats(
                stats_meta={"steps": self.optimizer_step}, test_stats=stats
            )

    def export(self, path, summary=None):
        """Write the student encoder (without heads) as a ``save_pretrained`` folder."""
        return export_pretrained(self.modules.wavlm, path, summary=summary)
