"""Learning rates of every Brain using LinearWarmupScheduler, against the reference.

The reference (DPHuBERT's ``LinearDecayLRScheduler`` over ONE AdamW with the
groups main / log_alpha / lambdas; s3prl's ``WarmupLinearSchedule`` for
DistilHuBERT) runs optimizer step k (counted from 1) at ``k / W`` of every
group's base lr during the W warmup steps, then ``(N - k) / (N - W)``.
"""

import pytest
import speechbrain as sb
import torch
from speechbrain.nnet.schedulers import LinearWarmupScheduler
from transformers import WavLMModel

from speechbrain_skill.data.dataio import AudioBatch
from speechbrain_skill.distillation.brains import (
    DistillationBrain,
    PruningDistillationBrain,
)
from speechbrain_skill.distillation.lagrangian import SparsityLagrangian
from speechbrain_skill.distillation.losses import DistillationLoss
from speechbrain_skill.lobes.heads import LayerProjections
from speechbrain_skill.lobes.student import PrunableSSLEncoder
from speechbrain_skill.lobes.teacher import FrozenSSLTeacher
from speechbrain_skill.pretraining.brain import HuBERTPretrainBrain
from speechbrain_skill.pretraining.collate import LabelledCropCollate
from speechbrain_skill.pretraining.head import MaskedPredictionHead
from speechbrain_skill.pretraining.labels import FrameLabels
from speechbrain_skill.pretraining.model import wavlm_pretraining_config

LR, REG_LR, WARMUP, STEPS = 2e-4, 0.02, 4, 10


def reference_factor(step, warmup=WARMUP, total=STEPS):
    """The reference schedule at optimizer step ``step`` (from 1)."""
    if step <= warmup:
        return step / warmup
    if step >= total:
        return 0.0
    return (total - step) / (total - warmup)


def record_lrs(optimizers):
    """Per optimizer, the lr of its first group at each of its steps."""
    seen = {name: [] for name in optimizers}
    for name, optimizer in optimizers.items():
        optimizer.register_step_pre_hook(
            lambda opt, args, kwargs, name=name: seen[name].append(
                opt.param_groups[0]["lr"]
            )
        )
    return seen


def batch():
    generator = torch.Generator().manual_seed(0)
    return AudioBatch(
        [{"id": "a", "sig": 0.1 * torch.randn(8000, generator=generator)}]
    )


def pruning_brain(tiny_hubert, **extra):
    torch.manual_seed(0)
    hparams = dict(
        distill_loss=DistillationLoss(),
        gate_opt_class=lambda p: torch.optim.AdamW(p, lr=REG_LR, weight_decay=0.0),
        lambda_opt_class=lambda p: torch.optim.AdamW(
            p, lr=REG_LR, weight_decay=0.0, maximize=True
        ),
        lr_annealing=LinearWarmupScheduler(LR, WARMUP, STEPS),
        log_interval=10**6,
        **extra,
    )
    modules = {
        "teacher": FrozenSSLTeacher(tiny_hubert),
        "student": PrunableSSLEncoder.from_hf(
            tiny_hubert, prune_heads=True, prune_ffn_units=True
        ).train(),
        "heads": LayerProjections([0, 2, 4], 32),
        "lagrangian": SparsityLagrangian(0.5, 5),
    }
    return PruningDistillationBrain(
        [[0], [2], [4]],
        modules=modules,
        opt_class=lambda p: torch.optim.AdamW(p, lr=LR, weight_decay=0.0),
        hparams=hparams,
        run_opts={},
    )


def test_gates_and_multipliers_follow_the_main_schedule(tiny_hubert):
    brain = pruning_brain(tiny_hubert)
    brain.on_fit_start()
    seen = record_lrs(brain.optimizers_dict)
    before = [p.detach().clone() for p in brain.student.main_parameters()]
    brain.fit_batch(batch())
    # The first step moves every weight by at most the warmup lr (Adam's first
    # update has magnitude lr), not by the peak lr.
    moved = max(
        (p.detach() - b).abs().max().item()
        for p, b in zip(brain.student.main_parameters(), before)
    )
    assert LR / WARMUP * 0.9 < moved <= LR / WARMUP * 1.001
    for _ in range(STEPS - 1):
        brain.fit_batch(batch())
    factors = [reference_factor(k) for k in range(1, STEPS + 1)]
    assert seen["main"] == pytest.approx([LR * f for f in factors], rel=1e-12)
    assert seen["gates"] == pytest.approx([REG_LR * f for f in factors], rel=1e-12)
    assert seen["lambdas"] == pytest.approx([REG_LR * f for f in factors], rel=1e-12)
    assert brain.lambda_optimizer.param_groups[0]["maximize"]


def test_constant_reg_lr_when_configured(tiny_hubert):
    brain = pruning_brain(tiny_hubert, reg_lr_follows_schedule=False)
    brain.on_fit_start()
    seen = record_lrs(brain.optimizers_dict)
    for _ in range(3):
        brain.fit_batch(batch())
    assert seen["gates"] == seen["lambdas"] == [REG_LR] * 3
    assert seen["main"] == pytest.approx([LR * reference_factor(k) for k in (1, 2, 3)])


def test_final_distillation_first_step_uses_the_warmup_lr(tiny_hubert):
    hparams = dict(
        distill_loss=DistillationLoss(),
        lr_annealing=LinearWarmupScheduler(LR, WARMUP, STEPS),
        log_interval=10**6,
    )
    modules = {
        "teacher": FrozenSSLTeacher(tiny_hubert),
        "student": PrunableSSLEncoder.from_hf(tiny_hubert, num_layers=2).train(),
        "heads": LayerProjections([2, 2], 32),
    }
    brain = DistillationBrain(
        [[2], [4]],
        modules=modules,
        opt_class=lambda p: torch.optim.AdamW(p, lr=LR),
        hparams=hparams,
        run_opts={},
    )
    brain.init_optimizers()  # without on_fit_start too
    seen = record_lrs(brain.optimizers_dict)
    for _ in range(2):
        brain.fit_batch(batch())
    assert seen["main"] == pytest.approx([LR / WARMUP, 2 * LR / WARMUP])


def test_pretraining_first_step_uses_the_warmup_lr():
    cfg = wavlm_pretraining_config(
        hidden_size=32,
        num_layers=1,
        num_heads=2,
        ffn_size=32,
        conv_channels=8,
        pos_conv_groups=4,
    )
    brain = HuBERTPretrainBrain(
        modules={"wavlm": WavLMModel(cfg), "head": MaskedPredictionHead(32, 5, 8)},
        opt_class=lambda params: torch.optim.AdamW(params, lr=LR),
        hparams=dict(
            mask_prob=0.8,
            mask_length=5,
            min_masks=1,
            unmasked_weight=0.0,
            seed=0,
            lr_annealing=LinearWarmupScheduler(LR, WARMUP, STEPS),
        ),
        run_opts={"device": "cpu"},
    )
    labels = FrameLabels({"a": torch.randint(5, (49,))}, num_clusters=5)
    one = LabelledCropCollate(labels)([{"id": "a", "sig": torch.randn(16000)}])
    brain.on_fit_start()
    seen = record_lrs({"main": brain.optimizer})
    brain.on_stage_start(sb.Stage.TRAIN)
    for _ in range(WARMUP + 1):
        brain.fit_batch(one)
    expected = [LR * reference_factor(k) for k in range(1, WARMUP + 2)]
    assert seen["main"] == pytest.approx(expected)


def test_one_gradient_clip_over_weights_gates_and_multipliers(tiny_hubert, monkeypatch):
    # Lightning clips the reference's ONE optimizer over all its groups together.
    brain = pruning_brain(tiny_hubert, max_grad_norm=1e-3)
    brain.on_fit_start()
    clipped, norms = [], []
    original = torch.nn.utils.clip_grad_norm_

    def spy(parameters, max_norm, *args, **kwargs):
        parameters = list(parameters)
        clipped.append(parameters)
        norm = original(parameters, max_norm, *args, **kwargs)
        after = torch.sqrt(
            sum(p.grad.norm() ** 2 for p in parameters if p.grad is not None)
        )
        norms.append((float(norm), float(after)))
        return norm

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", spy)
    with torch.no_grad():
        brain.modules.lagrangian.lambda1.fill_(1.0)
    brain.fit_batch(batch())
    everything = {
        id(p)
        for optimizer in brain.optimizers_dict.values()
        for group in optimizer.param_groups
        for p in group["params"]
    }
    assert len(clipped) == 1 and {id(p) for p in clipped[0]} == everything
    before, after = norms[0]
    assert before > 1e-3 and after == pytest.approx(1e-3, rel=1e-3)
