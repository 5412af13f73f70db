"""Training throughput of one distill + prune step at the WavLM Base+ shape.

One step is one :meth:`PruningDistillationBrain.fit_batch` call, exactly what
the recipe runs: frozen teacher forward -> targets -> student forward with
sampled hard-concrete gates (conv channels, heads, FFN units) -> DPHuBERT's
projections (target 0 alone, targets 4, 8, 12 share one Linear) -> L1 - cos
loss + expected-sparsity Lagrangian -> backward -> gradient clipping at
norm 10 -> the three AdamW optimizers (fused, as in the recipe yamls;
``--unfused``: the for-loop implementation) -> learning-rate schedule. Random
weights (only shapes matter for timing) with the dropouts of the reference's
WavLM Base+ conversion (attention, hidden and projection 0.1, FFN
activation 0.0).

Reported: seconds of audio per second (per device), the median step time
and its parts (teacher forward and student forward, timed by hooks; the
rest is loss, backward and optimizer steps), the device and precision.

``--keep-fraction F`` puts every gate in a late-pruning state (a random
fraction F of each gate's units at ``log_alpha = +10``, the rest at -10):
units whose sample is exactly 0 are then skipped by the student.
``--compile`` applies SpeechBrain's ``--compile`` run option.

Usage::

    # CPU, as in docs/distillation.md
    python benchmarks/bench_distill_throughput.py --batch 2 --seconds 4 --steps 5
    # one GPU, 160 s of audio per step as the reference recipe
    python benchmarks/bench_distill_throughput.py --device cuda --precision bf16 \\
        --batch 10 --seconds 16 --steps 10
"""

import argparse
import json
import os
import platform
import statistics
import time
import warnings

import torch
from speechbrain.dataio.batch import PaddedBatch
from transformers import WavLMConfig, WavLMModel

from speechbrain_skill.distillation.brains import PruningDistillationBrain
from speechbrain_skill.distillation.lagrangian import SparsityLagrangian
from speechbrain_skill.distillation.losses import DistillationLoss
from speechbrain_skill.lobes.heads import LayerProjections
from speechbrain_skill.lobes.student import PrunableSSLEncoder, num_params
from speechbrain_skill.lobes.teacher import FrozenSSLTeacher

LAYERS = [0, 4, 8, 12]
TARGET_SPARSITY = 0.75
SPARSITY_WARMUP = 5000
LR, REG_LR, WARMUP, MAX_STEPS, CLIP = 2e-4, 0.02, 15000, 50000, 10.0


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=2, help="utterances per step")
    parser.add_argument("--seconds", type=float, default=4.0, help="seconds each")
    parser.add_argument("--steps", type=int, default=5, help="timed steps")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32")
    parser.add_argument("--keep-fraction", type=float, default=None)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument(
        "--unfused", action="store_true", help="for-loop AdamW (the recipes use fused)"
    )
    parser.add_argument("--json", default=None, help="write the results here")
    return parser.parse_args()


def hf_teacher():
    """Random WavLM Base+ with the dropout values of the reference's conversion."""
    config = WavLMConfig(
        hidden_dropout=0.1,
        attention_dropout=0.1,
        activation_dropout=0.0,
        feat_proj_dropout=0.1,
        layerdrop=0.0,
    )
    torch.manual_seed(0)
    return WavLMModel(config).eval()


def set_gates(gates, keep_fraction, seed=0):
    """Late-pruning state of a sequence of ``log_alpha`` tensors (any model)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for log_alpha in gates:
            count = log_alpha.numel()
            values = torch.full((count,), -10.0)
            kept = max(1, round(keep_fraction * count))
            values[torch.randperm(count, generator=generator)[:kept]] = 10.0
            log_alpha.copy_(values.to(log_alpha.device))


class OurStep:
    """One ``fit_batch`` of our pruning Brain, configured as the DPHuBERT recipe."""

    def __init__(
        self,
        hf_model,
        keep_fraction=None,
        precision="fp32",
        compile_modules=False,
        device="cpu",
        fused=True,
    ):
        from speechbrain.nnet.schedulers import LinearWarmupScheduler

        student = PrunableSSLEncoder.from_hf(
            hf_model, prune_conv=True, prune_heads=True, prune_ffn_units=True
        )
        if keep_fraction is not None:
            set_gates(student.gate_parameters(), keep_fraction)
        self.teacher = FrozenSSLTeacher(hf_model, normalize_waveform=False)
        self.student = student
        modules = {
            "teacher": self.teacher,
            "student": student,
            "heads": LayerProjections(LAYERS, 768, sharing=[[0], [1, 2, 3]]),
            "lagrangian": SparsityLagrangian(TARGET_SPARSITY, SPARSITY_WARMUP),
        }
        hparams = {
            "distill_loss": DistillationLoss(1.0, 1.0, "neg_cos"),
            "gate_opt_class": lambda params: torch.optim.AdamW(
                params, lr=REG_LR, fused=fused
            ),
            "lambda_opt_class": lambda params: torch.optim.AdamW(
                params, lr=REG_LR, maximize=True, fused=fused
            ),
            "lr_annealing": LinearWarmupScheduler(LR, WARMUP, MAX_STEPS),
            "max_steps": MAX_STEPS,
            "log_interval": 10**9,
            "train_logger": None,
        }
        run_opts = {
            "device": device,
            "max_grad_norm": CLIP,
            "precision": precision,
            "noprogressbar": True,
            "compile": compile_modules,
        }
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.brain = PruningDistillationBrain(
                [[layer] for layer in LAYERS],
                modules=modules,
                opt_class=lambda params: torch.optim.AdamW(params, lr=LR, fused=fused),
                hparams=hparams,
                run_opts=run_opts,
            )
        self.brain._compile()
        self.brain.init_optimizers()
        self.brain.modules.train()

    def __call__(self, wavs):
        batch = PaddedBatch([{"id": str(i), "sig": wav} for i, wav in enumerate(wavs)])
        self.brain.fit_batch(batch)


class ForwardTimer:
    """Wall-clock time of a module's forward calls, by hooks."""

    def __init__(self, module, device):
        self.device = torch.device(device)
        self.times = []
        module.register_forward_pre_hook(self._start)
        module.register_forward_hook(self._stop)

    def _sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _start(self, module, args):
        self._sync()
        self.started = time.perf_counter()

    def _stop(self, module, args, output):
        self._sync()
        self.times.append(time.perf_counter() - self.started)


def main():
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    step = OurStep(
        hf_teacher(),
        args.keep_fraction,
        args.precision,
        args.compile,
        args.device,
        fused=not args.unfused,
    )
    timers = {
        "teacher_forward": ForwardTimer(step.teacher, args.device),
        "student_forward": ForwardTimer(step.student, args.device),
    }
    torch.manual_seed(1)
    wavs = torch.randn(args.batch, int(args.seconds * 16000))
    totals = []
    for index in range(args.warmup + args.steps):
        if index == args.warmup:
            for timer in timers.values():
                timer.times.clear()
        start = time.perf_counter()
        step(wavs)
        if torch.device(args.device).type == "cuda":
            torch.cuda.synchronize()
        if index >= args.warmup:
            totals.append(time.perf_counter() - start)
    medians = {key: statistics.median(t.times) for key, t in timers.items()}
    medians["step"] = statistics.median(totals)
    medians["loss_backward_optimizer"] = (
        medians["step"] - medians["teacher_forward"] - medians["student_forward"]
    )
    audio = args.batch * args.seconds
    device = torch.device(args.device)
    name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"{platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads"
    )
    result = {
        "device": f"{name}, torch {torch.__version__}",
        "precision": args.precision,
        "compile": args.compile,
        "fused_adamw": not args.unfused,
        "keep_fraction": args.keep_fraction,
        "batch": args.batch,
        "seconds_per_utterance": args.seconds,
        "teacher_params": num_params(step.teacher.model),
        "student_params_without_gates": num_params(step.student),
        "audio_seconds_per_second": round(audio / medians["step"], 3),
        **{f"median_{key}_s": round(value, 3) for key, value in medians.items()},
        "load_average_1min": os.getloadavg()[0],
    }
    print(json.dumps(result, indent=2))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=2)


if __name__ == "__main__":
    main()
