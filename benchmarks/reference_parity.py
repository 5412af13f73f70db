"""Side-by-side parity with the DPHuBERT reference implementation (pyf98/DPHuBERT).

Runs the reference's own model, hard-concrete, loss, Lagrangian, optimizer
groups and learning-rate scheduler (imported at run time from a checkout given
with ``--reference``; nothing of it is copied here) next to this project's
:class:`PruningDistillationBrain`, on ONE tiny randomly initialised HuBERT-shaped
teacher imported into both, with the same batches, the same initial gates and
the same gate noise:

1. one step from the same state (the end of the run, our weights, gates,
   projections and multipliers copied into the reference), the same gate
   noise: loss (rel 1e-5), gradients of the student weights, the gate
   ``log_alpha`` and the multipliers (rel 1e-4), expected parameter count
   and sparsity, all like for like: the reference counts a frozen
   1-per-channel "dummy weight" after the CNN that our student does not have
   (in the expected count and in the teacher's total), so our penalty is
   re-evaluated with that count, from our own gates, before comparing (the
   uncorrected numbers are reported too; for WavLM the reference would also
   leave the relative-position parameters out of the expected count, which is
   why the teacher here is HuBERT-shaped); the learning rate of every group at
   the first step of the run;
2. ``--steps`` steps (default 500) at the reference schedule scaled to the run
   (target warmup 10 %, lr warmup 30 % of the run, linear decay to 0): expected
   sparsity within 0.005 at every step after the target warmup, materialised
   sizes within 0.5 %; a PNG of sparsity, lambda1, lambda2 and loss of both.

Usage (see docs/distillation.md for the measured output)::

    git clone https://github.com/pyf98/DPHuBERT /tmp/DPHuBERT
    python benchmarks/reference_parity.py --reference /tmp/DPHuBERT \\
        --audio /path/to/librispeech/flacs --plot docs/images/reference_parity.png

The reference imports ``pytorch_lightning`` only for its ``LightningModule``
base class; a minimal stand-in providing ``global_step`` and ``log_dict`` is
registered in its place (Lightning need not be installed), and the loop below does
what Lightning's automatic optimisation does at fp32 (backward, clip the norm of
all optimizer parameters together, optimizer step, scheduler step). Exit code 1
when a check fails.
"""

import argparse
import json
import math
import os
import re
import sys
import time
import types
from pathlib import Path

import torch

from speechbrain_skill.data.dataio import AudioBatch
from speechbrain_skill.distillation.brains import PruningDistillationBrain
from speechbrain_skill.distillation.lagrangian import SparsityLagrangian
from speechbrain_skill.distillation.losses import DistillationLoss
from speechbrain_skill.lobes.heads import LayerProjections
from speechbrain_skill.lobes.hf_ssl import random_ssl_model
from speechbrain_skill.lobes.student import PrunableSSLEncoder
from speechbrain_skill.lobes.teacher import FrozenSSLTeacher
from speechbrain_skill.lobes.tiny_models import tiny_config

SAMPLE_RATE = 16000
EPS = 1e-6  # the hard-concrete noise bound of both implementations


# ----------------------------------------------------------------- reference
def import_reference(directory):
    """Import the reference's ``wav2vec2.model`` and ``lightning`` modules."""
    sys.path.insert(0, str(Path(directory).resolve()))
    stand_in = types.ModuleType("pytorch_lightning")

    class LightningModule(torch.nn.Module):
        """What the reference's DistillModule uses of Lightning."""

        global_step = 0
        current_epoch = 0

        def log_dict(self, values, **kwargs):
            self.logged = {k: float(v) for k, v in values.items()}

    stand_in.LightningModule = LightningModule
    sys.modules["pytorch_lightning"] = stand_in
    # The reference passes ``verbose`` to the scheduler base class, which recent
    # PyTorch no longer accepts.
    scheduler_base = torch.optim.lr_scheduler._LRScheduler
    original_init = scheduler_base.__init__

    def accepting_verbose(self, optimizer, last_epoch=-1, verbose=None):
        original_init(self, optimizer, last_epoch)

    scheduler_base.__init__ = accepting_verbose
    import lightning
    from wav2vec2 import model as reference_model

    return reference_model, lightning


def reference_config(hf_config, prune):
    """The reference's model config for a Hugging Face HuBERT config."""
    layers = hf_config.num_hidden_layers
    return dict(
        extractor_mode=f"{hf_config.feat_extract_norm}_norm",
        extractor_conv_layer_config=list(
            zip(hf_config.conv_dim, hf_config.conv_kernel, hf_config.conv_stride)
        ),
        extractor_conv_bias=hf_config.conv_bias,
        encoder_embed_dim=hf_config.hidden_size,
        encoder_projection_dropout=0.0,
        encoder_pos_conv_kernel=hf_config.num_conv_pos_embeddings,
        encoder_pos_conv_groups=hf_config.num_conv_pos_embedding_groups,
        encoder_num_layers=layers,
        encoder_use_attention=[True] * layers,
        encoder_use_feed_forward=[True] * layers,
        encoder_num_heads=[hf_config.num_attention_heads] * layers,
        encoder_head_dim=hf_config.hidden_size // hf_config.num_attention_heads,
        encoder_attention_dropout=0.0,
        encoder_ff_interm_features=[hf_config.intermediate_size] * layers,
        encoder_ff_interm_dropout=0.0,
        encoder_dropout=0.0,
        encoder_layer_norm_first=hf_config.do_stable_layer_norm,
        encoder_layer_drop=0.0,
        aux_num_out=None,
        normalize_waveform=False,
        extractor_prune_conv_channels=prune,
        encoder_prune_attention_heads=prune,
        encoder_prune_feed_forward_intermediate=prune,
    )


def reference_state_dict(hf_model):
    """Hugging Face parameter names -> the reference's (torchaudio's) names."""
    state = {}
    for name, value in hf_model.state_dict().items():
        if name == "masked_spec_embed":
            continue
        name = name.replace("parametrizations.weight.original0", "weight_g")
        name = name.replace("parametrizations.weight.original1", "weight_v")
        if name.startswith("feature_projection."):
            name = "encoder." + name
        elif name.startswith("encoder."):
            name = "encoder.transformer." + name[len("encoder.") :]
        state[name] = value
    return state


def load_reference_model(reference_model, hf_model, prune):
    model = reference_model.wav2vec2_model(**reference_config(hf_model.config, prune))
    result = model.load_state_dict(reference_state_dict(hf_model), strict=False)
    missing = [
        k for k in result.missing_keys if "log_alpha" not in k and "dummy" not in k
    ]
    if missing or result.unexpected_keys:
        raise RuntimeError(f"Teacher import: {missing} {result.unexpected_keys}")
    return model


def gate_pairs(reference_student, student):
    """(reference HardConcrete, our HardConcreteGate) in the same order."""
    ref_gates, our_gates = [], []
    extractor = reference_student.feature_extractor
    for ref_layer, our_layer in zip(
        extractor.conv_layers, student.feature_extractor.conv_layers
    ):
        ref_gates.append(ref_layer.hard_concrete)
        our_gates.append(our_layer.channel_gate)
    for ref_layer, our_layer in zip(
        reference_student.encoder.transformer.layers, student.encoder.layers
    ):
        ref_gates.append(ref_layer.attention.hard_concrete_for_heads)
        our_gates.append(our_layer.attention.head_gate)
        ref_gates.append(ref_layer.feed_forward.hard_concrete_for_intermediate)
        our_gates.append(our_layer.feed_forward.unit_gate)
    return list(zip(ref_gates, our_gates))


def our_name(reference_name):
    """Our student's parameter name for a reference student parameter name."""
    name = reference_name.replace("encoder.transformer.", "encoder.")
    name = name.replace("encoder.feature_projection.", "feature_projection.")
    name = re.sub(r"(conv_layers\.\d+)\.layer_norm\.", r"\1.norm.", name)
    name = re.sub(r"(layers\.\d+)\.layer_norm\.", r"\1.attention_layer_norm.", name)
    name = name.replace(".hard_concrete.", ".channel_gate.")
    name = name.replace(".hard_concrete_for_heads.", ".head_gate.")
    name = name.replace(".hard_concrete_for_intermediate.", ".unit_gate.")
    weight_norm = "pos_conv_embed.conv.parametrizations.weight."
    name = name.replace("pos_conv_embed.conv.weight_g", weight_norm + "original0")
    return name.replace("pos_conv_embed.conv.weight_v", weight_norm + "original1")


class FixedNoise:
    """Feeds the same uniform noise to the gates of both implementations."""

    def __init__(self, pairs, seed, device="cpu"):
        self.pairs = pairs
        self.device = device
        self.generator = torch.Generator().manual_seed(seed)
        for ref_gate, our_gate in pairs:
            ref_gate.log_alpha.new = self._reference_source(ref_gate)
            our_gate.forward = self._our_forward(our_gate)
        self.draw()

    def draw(self):
        """New noise for the next step (both sides)."""
        self.noise = [
            (EPS + (1 - 2 * EPS) * torch.rand(g.n_in, generator=self.generator)).to(
                self.device
            )
            for g, _ in self.pairs
        ]
        self.index = {id(g): i for i, (g, _) in enumerate(self.pairs)}
        self.our_index = {id(g): i for i, (_, g) in enumerate(self.pairs)}

    def _reference_source(self, gate):
        # The reference draws ``log_alpha.new(n).uniform_(eps, 1 - eps)``.
        noise = self

        class Source:
            def uniform_(self, low, high):
                return noise.noise[noise.index[id(gate)]].clone()

        return lambda *size: Source()

    def _our_forward(self, gate):
        def forward():
            if gate.training:
                return gate.sample(uniform=self.noise[self.our_index[id(gate)]])
            return gate.deterministic_mask()

        return forward


# ----------------------------------------------------------------- data
def make_batches(steps, batch_size, seconds, audio_dir, seed):
    generator = torch.Generator().manual_seed(seed)
    length = int(seconds * SAMPLE_RATE)
    signals = []
    if audio_dir:
        import soundfile as sf

        for path in sorted(Path(audio_dir).rglob("*.flac"))[:64]:
            data, rate = sf.read(str(path), dtype="float32")
            if rate == SAMPLE_RATE and len(data) > length:
                signals.append(torch.from_numpy(data))
    batches = []
    for _ in range(steps):
        wavs = []
        for _ in range(batch_size):
            if signals:
                signal = signals[
                    int(torch.randint(len(signals), (1,), generator=generator))
                ]
                start = int(
                    torch.randint(len(signal) - length, (1,), generator=generator)
                )
                wavs.append(signal[start : start + length])
            else:
                wavs.append(0.1 * torch.randn(length, generator=generator))
        batches.append(torch.stack(wavs))
    return batches


# ----------------------------------------------------------------- the two sides
def build_reference(args, reference_model, lightning, hf_teacher, layers, groups):
    """The reference's DistillModule for a Hugging Face teacher.

    Its teacher and student models, loss, Lagrangian, optimizer groups and
    scheduler, all the reference's code.
    """
    ref_teacher = load_reference_model(reference_model, hf_teacher, prune=False)
    for param in ref_teacher.parameters():
        param.requires_grad = False
    ref_teacher.eval()
    ref_student = load_reference_model(reference_model, hf_teacher, prune=True)
    dim = args.hidden_size
    projections = torch.nn.ModuleList()
    for group in groups:
        linear = torch.nn.Linear(dim, dim)
        torch.nn.init.eye_(linear.weight)
        torch.nn.init.zeros_(linear.bias)
        for _ in group:
            projections.append(linear)
    ref = lightning.DistillModule(
        teacher_model=ref_teacher,
        student_model=ref_student,
        distill_mode="layer2layer",
        distill_layers=layers,
        distill_linear_projs=projections,
        distill_loss=lightning.DistillLoss(0.0, 1.0, 1.0, "raw"),
        learning_rate=args.lr,
        weight_decay=0.0,
        warmup_updates=args.lr_warmup,
        max_updates=args.steps,
        use_reg=True,
        reg_learning_rate=args.reg_lr,
        target_sparsity=args.target_sparsity,
        sparsity_warmup_updates=args.sparsity_warmup,
        tsv_dir=None,
        train_subset=None,
        seconds_per_batch=None,
        num_workers=0,
    )
    return ref


def build(args, reference_model, lightning):
    """Both sides; ``lightning`` None: ours only (``ref`` and ``pairs`` None)."""
    hf_config = tiny_config(
        "hubert",
        hidden_size=args.hidden_size,
        num_hidden_layers=args.num_layers,
        num_attention_heads=args.num_heads,
        intermediate_size=args.intermediate_size or 4 * args.hidden_size,
        conv_dim=(args.conv_channels,) * 7,
        num_conv_pos_embeddings=args.pos_conv_kernel,
        num_conv_pos_embedding_groups=args.pos_conv_groups,
    )
    hf_teacher = random_ssl_model(hf_config, seed=args.seed)
    layers = [int(x) for x in args.distill_layers.replace(".", ",").split(",")]
    sharing_groups = [
        [int(x) for x in group.split(",")] for group in args.distill_layers.split(".")
    ]
    positions, sharing = 0, []
    for group in sharing_groups:
        sharing.append(list(range(positions, positions + len(group))))
        positions += len(group)

    # Our side: the recipe's Brain with the same settings.
    from speechbrain.nnet.schedulers import LinearWarmupScheduler

    teacher = FrozenSSLTeacher(hf_teacher, normalize_waveform=False)
    student = PrunableSSLEncoder.from_hf(
        hf_teacher, prune_conv=True, prune_heads=True, prune_ffn_units=True
    ).train()
    heads = LayerProjections(layers, args.hidden_size, sharing=sharing)
    lagrangian = SparsityLagrangian(args.target_sparsity, args.sparsity_warmup)
    hparams = dict(
        distill_loss=DistillationLoss(
            l1_weight=1.0, cos_weight=1.0, cos_type="neg_cos"
        ),
        gate_opt_class=lambda p: torch.optim.AdamW(
            p, lr=args.reg_lr, weight_decay=0.0, fused=args.fused
        ),
        lambda_opt_class=lambda p: torch.optim.AdamW(
            p, lr=args.reg_lr, weight_decay=0.0, maximize=True, fused=args.fused
        ),
        lr_annealing=LinearWarmupScheduler(args.lr, args.lr_warmup, args.steps),
        max_steps=args.steps,
        log_interval=10**9,
        max_grad_norm=args.clip,
        hidden_state_zero="projection",
        reg_lr_follows_schedule=True,
    )
    brain = PruningDistillationBrain(
        [[layer] for layer in layers],
        modules={
            "teacher": teacher,
            "student": student,
            "heads": heads,
            "lagrangian": lagrangian,
        },
        opt_class=lambda p: torch.optim.AdamW(
            p, lr=args.lr, weight_decay=0.0, fused=args.fused
        ),
        hparams=hparams,
        run_opts={
            "device": args.device,
            "precision": args.precision,
            "noprogressbar": True,
        },
    )
    if lightning is None:
        return None, brain, None, hf_teacher
    ref = build_reference(
        args, reference_model, lightning, hf_teacher, layers, sharing_groups
    )
    # Same initial gates in both.
    pairs = gate_pairs(ref.student_model, student)
    with torch.no_grad():
        for ref_gate, our_gate in pairs:
            ref_gate.log_alpha.copy_(our_gate.log_alpha)
    return ref, brain, pairs, hf_teacher


def reference_grads(ref):
    grads = {}
    for name, param in ref.student_model.named_parameters():
        if param.grad is not None:
            grads[our_name(name)] = param.grad.detach().clone()
    grads["lambda1"] = ref.lambda1.grad.detach().clone()
    grads["lambda2"] = ref.lambda2.grad.detach().clone()
    for i, proj in enumerate(ref.distill_linear_projs):
        grads[f"projection.{i}.weight"] = proj.weight.grad.detach().clone()
    return grads


def our_grads(brain):
    grads = {}
    for name, param in brain.student.named_parameters():
        if param.grad is not None:
            grads[name] = param.grad.detach().clone()
    lagrangian = brain.modules.lagrangian
    grads["lambda1"] = lagrangian.lambda1.grad.detach().clone()
    grads["lambda2"] = lagrangian.lambda2.grad.detach().clone()
    heads = brain.modules.heads
    for i, _ in enumerate(heads.student_layers):
        grads[f"projection.{i}.weight"] = (
            heads.projection(i).weight.grad.detach().clone()
        )
    return grads


def reference_count_correction(brain, last_conv_gate):
    """Gradient change if our penalty used the reference's parameter count.

    The reference counts one extra (frozen) "dummy weight" per channel of the
    last conv layer, in the expected count and in the teacher's total:
    ``s_ref = 1 - (E + E[C_last]) / (T + C_last)``. Our own gates give both
    counts; the difference of the penalty gradients makes our gradients
    comparable like for like.
    """
    student, lagrangian = brain.student, brain.modules.lagrangian
    names, params = zip(
        *[(n, p) for n, p in student.named_parameters() if n.endswith("log_alpha")]
    )
    params = list(params) + [lagrangian.lambda1, lagrangian.lambda2]
    names = list(names) + ["lambda1", "lambda2"]
    expected = student.expected_num_params()
    total = float(student.config.unpruned_num_params)
    ours = 1.0 - expected / total
    kept = last_conv_gate.expected_num_kept().double()
    like_reference = 1.0 - (expected + kept) / (total + last_conv_gate.num_units)
    step = brain.optimizer_step
    penalty_ours = lagrangian(ours, step)[0]
    penalty_like = lagrangian(like_reference, step)[0]
    grads_ours = torch.autograd.grad(penalty_ours, params, retain_graph=True)
    grads_like = torch.autograd.grad(penalty_like, params)
    deltas = {
        name: (like - own).to(torch.float32)
        for name, own, like in zip(names, grads_ours, grads_like)
    }
    return deltas, float(penalty_like - penalty_ours)


def relative_error(a, b):
    return float((a - b).norm() / b.norm().clamp(min=1e-30))


# ----------------------------------------------------------------- checks
def sync_reference_to_ours(ref, brain):
    """Copy our student, projections and multipliers into the reference's."""
    ours = dict(brain.student.named_parameters())
    heads, lagrangian = brain.modules.heads, brain.modules.lagrangian
    with torch.no_grad():
        for name, param in ref.student_model.named_parameters():
            if not name.endswith("dummy_weight"):
                param.copy_(ours[our_name(name)])
        for target, projection in enumerate(ref.distill_linear_projs):
            projection.weight.copy_(heads.projection(target).weight)
            projection.bias.copy_(heads.projection(target).bias)
        ref.lambda1.copy_(lagrangian.lambda1)
        ref.lambda2.copy_(lagrangian.lambda2)


def one_step(args, ref, brain, pairs, batch):
    """Loss and gradients of one step from the same state, the same gate noise.

    The state is the end of the run (our weights, gates, projections and
    multipliers copied into the reference): student and teacher differ there,
    unlike at step 1 where the student IS the teacher and the L1 term's
    subgradient at a zero residual depends on rounding (the reference, with
    one code path for both, gets exact zeros).
    """
    import speechbrain as sb

    sync_reference_to_ours(ref, brain)
    brain.student.train()
    ref.student_model.train()
    ref.zero_grad(set_to_none=True)
    for module in brain.modules.values():
        module.zero_grad(set_to_none=True)
    ref.global_step = brain.optimizer_step = args.steps
    ref_loss = ref.training_step((batch, torch.full((len(batch),), batch.shape[1])), 0)
    ref_loss.backward()
    outputs = brain.compute_forward(audio_batch(batch), sb.Stage.TRAIN)
    our_loss = brain.compute_objectives(outputs, None, sb.Stage.TRAIN)
    our_loss.backward()

    ref_g, our_g = reference_grads(ref), our_grads(brain)
    correction, loss_delta = reference_count_correction(
        brain, pairs[args.conv_index][1]
    )
    like_g = {n: g + correction.get(n, 0.0) for n, g in our_g.items()}
    categories = {
        "weights": [n for n in ref_g if "log_alpha" not in n and "lambda" not in n],
        "log_alpha": [n for n in ref_g if "log_alpha" in n],
        "lambdas": ["lambda1", "lambda2"],
    }
    grad_errors = {}
    for category, names in categories.items():
        ref_vector = torch.cat([ref_g[n].reshape(-1) for n in names])
        grad_errors[category] = relative_error(
            torch.cat([like_g[n].reshape(-1) for n in names]), ref_vector
        )
        grad_errors[f"{category}_uncorrected"] = relative_error(
            torch.cat([our_g[n].reshape(-1) for n in names]), ref_vector
        )
        # Per tensor, leaving out gradients that are analytically ~0 (e.g. the
        # key biases: softmax ignores them) where a ratio is noise.
        largest = max(float(ref_g[n].norm()) for n in names)
        per_tensor = {
            n: relative_error(like_g[n], ref_g[n])
            for n in names
            if float(ref_g[n].norm()) > 1e-4 * largest
        }
        worst = max(per_tensor, key=per_tensor.get)
        grad_errors[f"{category}_worst_tensor"] = [worst, per_tensor[worst]]

    student = brain.student
    ref_student = ref.student_model
    with torch.no_grad():
        ours_expected = float(student.expected_num_params())
        ref_expected = float(ref_student.get_num_params())
        last_conv = pairs[args.conv_index][1].expected_num_kept().item()
        ours_sparsity = float(student.expected_sparsity())
    ref_sparsity = float(ref.logged["sparsity_expected"])
    ref_total = ref.original_num_params
    ours_total = student.config.unpruned_num_params
    result = {
        "loss_ours": float(our_loss),
        "loss_reference": float(ref_loss),
        "loss_ours_like_reference": float(our_loss) + loss_delta,
        "loss_rel_error": abs(float(our_loss) + loss_delta - float(ref_loss))
        / abs(float(ref_loss)),
        "loss_rel_error_uncorrected": abs(float(our_loss) - float(ref_loss))
        / abs(float(ref_loss)),
        "grad_rel_errors": grad_errors,
        "expected_params_ours": ours_expected,
        "expected_params_reference": ref_expected,
        # The reference counts one "dummy weight" per last-conv channel.
        "expected_params_ours_like_reference": ours_expected + last_conv,
        "unpruned_params_ours": ours_total,
        "unpruned_params_reference": ref_total,
        "expected_sparsity_ours": ours_sparsity,
        "expected_sparsity_reference": ref_sparsity,
    }
    result["expected_params_rel_error"] = (
        abs(result["expected_params_ours_like_reference"] - ref_expected) / ref_expected
    )
    return result


def audio_batch(wavs):
    return AudioBatch([{"id": str(i), "sig": w} for i, w in enumerate(wavs)])


def train_both(args, ref, brain, noise, batches):
    """Run the reference's DistillModule and our Brain side by side."""
    config = ref.configure_optimizers()
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
    ref_params = [p for g in optimizer.param_groups for p in g["params"]]
    brain.on_fit_start()
    history = []
    first_lrs = None
    clipped = 0
    for step, wavs in enumerate(batches):
        noise.draw()
        ref.global_step = step
        lrs = [g["lr"] for g in optimizer.param_groups]
        ref_loss = ref.training_step(
            (wavs, torch.full((len(wavs),), wavs.shape[1])), step
        )
        optimizer.zero_grad()
        ref_loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(ref_params, args.clip)
        clipped += int(norm > args.clip)
        optimizer.step()
        scheduler.step()
        our_loss = brain.fit_batch(audio_batch(wavs))
        # The lrs of the step just taken (set when the batch started).
        our_lrs = [opt.param_groups[0]["lr"] for opt in brain.optimizers_dict.values()]
        if first_lrs is None:
            first_lrs = {"reference": lrs, "ours": our_lrs}
        parts = brain.last_parts
        lagrangian = brain.modules.lagrangian
        history.append(
            {
                "step": step + 1,
                "target": parts["target_sparsity"],
                "sparsity_ours": parts["expected_sparsity"],
                "sparsity_reference": ref.logged["sparsity_expected"],
                "lambda1_ours": float(lagrangian.lambda1),
                "lambda1_reference": float(ref.lambda1),
                "lambda2_ours": float(lagrangian.lambda2),
                "lambda2_reference": float(ref.lambda2),
                "loss_ours": float(our_loss),
                "loss_reference": float(ref_loss),
                "lr_ours": our_lrs,
                "lr_reference": lrs,
            }
        )
        if (step + 1) % max(1, args.steps // 10) == 0:
            h = history[-1]
            print(
                f"step {step + 1:4d}  target {h['target']:.3f}  sparsity "
                f"{h['sparsity_ours']:.4f} / {h['sparsity_reference']:.4f}  lambda1 "
                f"{h['lambda1_ours']:+.3f} / {h['lambda1_reference']:+.3f}  loss "
                f"{h['loss_ours']:.4f} / {h['loss_reference']:.4f}",
                flush=True,
            )
    return history, first_lrs, clipped


def materialised_sizes(ref, brain):
    """Materialised parameter counts of both, compared like for like.

    The reference drops an attention / FFN block whose heads / units are all
    pruned, output bias included; we keep such a block as its output bias
    (the exact function). The reference counts its dummy weight (one per kept
    last-conv channel); we have none.
    """
    student = brain.student.eval()
    pruned = student.prune()
    ours = sum(p.numel() for p in pruned.parameters())
    hidden = pruned.config.hidden_size
    emptied_biases = hidden * sum(
        (present and len(heads) == 0)
        for present, heads in zip(
            pruned.config.attention_present, pruned.config.attention_heads
        )
    ) + hidden * sum(
        (present and units == 0)
        for present, units in zip(pruned.config.ffn_present, pruned.config.ffn_dims)
    )
    ref_student = ref.student_model.eval()
    conv, use_attention, use_ffn, num_heads, _, ffn_units = ref_student.prune()
    dummy = ref_student.feature_extractor.dummy_weight.numel()
    reference = sum(p.numel() for p in ref_student.parameters())
    ours_like = ours - emptied_biases
    reference_like = reference - dummy
    return {
        "ours": ours,
        "reference": reference,
        "ours_without_emptied_block_biases": ours_like,
        "reference_without_dummy_weight": reference_like,
        "rel_difference": abs(ours_like - reference_like) / reference_like,
        "sparsity_ours": 1 - ours / student.config.unpruned_num_params,
        "sparsity_reference": 1 - reference / ref.original_num_params,
        "kept_ours": {
            "conv": pruned.config.conv_channels,
            "heads": [
                len(h) if p else 0
                for h, p in zip(
                    pruned.config.attention_heads, pruned.config.attention_present
                )
            ],
            "ffn": [
                d if p else 0
                for d, p in zip(pruned.config.ffn_dims, pruned.config.ffn_present)
            ],
        },
        "kept_reference": {
            "conv": [c[0] for c in conv],
            "heads": [h if a else 0 for h, a in zip(num_heads, use_attention)],
            "ffn": [d if f else 0 for d, f in zip(ffn_units, use_ffn)],
        },
    }


def plot(history, path, args):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [h["step"] for h in history]
    fig, axes = plt.subplots(2, 2, figsize=(11, 7), sharex=True)
    panels = [
        ("sparsity", "expected sparsity"),
        ("lambda1", "lambda1"),
        ("lambda2", "lambda2"),
        ("loss", "loss (distillation + penalty)"),
    ]
    for ax, (key, title) in zip(axes.flat, panels):
        ax.plot(
            steps,
            [h[f"{key}_reference"] for h in history],
            label="reference (DPHuBERT)",
            lw=2.5,
            alpha=0.6,
        )
        ax.plot(
            steps,
            [h[f"{key}_ours"] for h in history],
            label="ours",
            lw=1.0,
            ls="--",
            color="k",
        )
        if key == "sparsity":
            ax.plot(
                steps, [h["target"] for h in history], label="target", lw=0.8, color="r"
            )
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0, 0].legend()
    for ax in axes[1]:
        ax.set_xlabel("optimizer step")
    fig.suptitle(f"DPHuBERT reference vs ours, tiny HuBERT teacher, {args.steps} steps")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reference", required=True, help="checkout of pyf98/DPHuBERT")
    parser.add_argument(
        "--audio", default=None, help="folder of 16 kHz .flac files (default: noise)"
    )
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hidden_size", type=int, default=64)
    parser.add_argument("--num_layers", type=int, default=4)
    parser.add_argument("--conv_channels", type=int, default=32)
    parser.add_argument("--num_heads", type=int, default=4)
    parser.add_argument("--pos_conv_kernel", type=int, default=8)
    parser.add_argument("--pos_conv_groups", type=int, default=8)
    parser.add_argument(
        "--intermediate_size", type=int, default=None, help="default: 4 x hidden"
    )
    parser.add_argument(
        "--distill_layers",
        default="0.2,4",
        help="reference syntax: '.' separates projection-sharing groups",
    )
    parser.add_argument("--batch_size", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument(
        "--reg_lr",
        type=float,
        default=0.1,
        help="lr of log_alpha and multipliers (reference 0.02 over 50k steps; "
        "500 steps need more to reach the target)",
    )
    parser.add_argument("--target_sparsity", type=float, default=0.75)
    parser.add_argument("--clip", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="our Brain's device")
    parser.add_argument(
        "--fused", action="store_true", help="ours with fused AdamW (the yamls')"
    )
    parser.add_argument("--precision", default="fp32", help="our Brain's precision")
    parser.add_argument("--plot", default=None, help="PNG of the trajectories")
    parser.add_argument("--output", default=None, help="JSON with all numbers")
    args = parser.parse_args(argv)
    # The reference schedule (50k steps: lr warmup 15k, target warmup 5k) scaled.
    args.lr_warmup = round(0.3 * args.steps)
    args.sparsity_warmup = round(0.1 * args.steps)
    args.conv_index = 6
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    reference_model, lightning = import_reference(args.reference)
    ref, brain, pairs, _ = build(args, reference_model, lightning)
    noise = FixedNoise(pairs, args.seed + 1)
    batches = make_batches(
        args.steps + 1, args.batch_size, args.seconds, args.audio, args.seed
    )

    start = time.time()
    history, first_lrs, clipped = train_both(args, ref, brain, noise, batches[:-1])
    trained = {k: v.detach().clone() for k, v in ref.state_dict().items()}
    step_one = one_step(args, ref, brain, pairs, batches[-1])
    ref.load_state_dict(trained)
    sizes = materialised_sizes(ref, brain)
    after = [h for h in history if h["step"] > args.sparsity_warmup]
    max_gap = max(abs(h["sparsity_ours"] - h["sparsity_reference"]) for h in after)
    final = history[-1]
    checks = {
        "loss (rel 1e-5)": step_one["loss_rel_error"] <= 1e-5,
        "grads weights (rel 1e-4)": step_one["grad_rel_errors"]["weights"] <= 1e-4,
        "grads log_alpha (rel 1e-4)": step_one["grad_rel_errors"]["log_alpha"] <= 1e-4,
        "grads lambdas (rel 1e-4)": step_one["grad_rel_errors"]["lambdas"] <= 1e-4,
        "expected params like for like (rel 1e-5)": step_one[
            "expected_params_rel_error"
        ]
        <= 1e-5,
        "first-step lr of every group": all(
            math.isclose(abs(a), abs(b), rel_tol=1e-9)
            for a, b in zip(first_lrs["reference"], first_lrs["ours"])
        ),
        "sparsity trajectories within 0.005 after target warmup": max_gap <= 0.005,
        "materialised sizes within 0.5%": sizes["rel_difference"] <= 0.005,
    }
    report = {
        "command": " ".join(sys.argv),
        "settings": {k: v for k, v in vars(args).items()},
        "one_step": step_one,
        "first_step_lrs": first_lrs,
        "steps_where_reference_clipped": clipped,
        "max_sparsity_gap_after_warmup": max_gap,
        "final": {k: final[k] for k in final if not k.startswith("lr")},
        "materialised": sizes,
        "checks": checks,
        "seconds": round(time.time() - start, 1),
        "load_average": os.getloadavg(),
        "history": history,
    }
    # Loss parts are device tensors since the host-sync work (issue 26).
    plain = {"default": lambda value: value.tolist()}
    print(
        json.dumps(
            {k: v for k, v in report.items() if k != "history"}, indent=2, **plain
        )
    )
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(report, indent=2, **plain))
    if args.plot:
        plot(history, args.plot, args)
    for name, passed in checks.items():
        print(f"{'PASS' if passed else 'FAIL'}  {name}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
