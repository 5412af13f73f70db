"""Training throughput of a distill + prune step at the WavLM Base+ shape, on CPU.

One step = frozen teacher forward (no grad) -> group-mean targets -> student
forward with sampled hard-concrete gates (conv, heads, FFN units) -> identity
projections -> L1 + cosine loss + sparsity Lagrangian -> backward -> three
optimizer steps. The same code path as the SKILL recipe's
``PruningDistillationBrain``, timed piece by piece. Random weights (only shapes
matter for timing).

Reported: seconds of audio processed per wall-clock second, and the median time
of teacher forward, student forward, loss + backward and optimizer steps.

Usage::

    python benchmarks/bench_distill_throughput.py --batch 2 --seconds 4 --steps 5
"""

import argparse
import json
import platform
import statistics
import time

import torch
from transformers import WavLMConfig, WavLMModel

from speechbrain_skill.distillation.lagrangian import SparsityLagrangian
from speechbrain_skill.distillation.losses import DistillationLoss
from speechbrain_skill.distillation.targets import (
    align_frames,
    default_student_layers,
    group_targets,
)
from speechbrain_skill.lobes.frames import lengths_to_mask
from speechbrain_skill.lobes.heads import LayerProjections
from speechbrain_skill.lobes.student import PrunableSSLStudent, num_params
from speechbrain_skill.lobes.teacher import FrozenSSLTeacher


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=2, help="utterances per step")
    parser.add_argument("--seconds", type=float, default=4.0, help="seconds each")
    parser.add_argument("--steps", type=int, default=5, help="timed steps")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", default=None, help="write the results here")
    return parser.parse_args()


def build(groups):
    """Teacher (frozen), prunable student copy, heads, loss and optimizers."""
    torch.manual_seed(0)
    hf_teacher = WavLMModel(WavLMConfig(layerdrop=0.0)).eval()
    teacher = FrozenSSLTeacher(hf_teacher, normalize_waveform=False)
    student = PrunableSSLStudent.from_hf(
        hf_teacher, prune_conv=True, prune_heads=True, prune_ffn_units=True
    )
    heads = LayerProjections(default_student_layers(groups), 768)
    lagrangian = SparsityLagrangian(0.75, warmup_steps=5000)
    main = torch.optim.AdamW([*student.main_parameters(), *heads.parameters()], lr=2e-4)
    gates = torch.optim.AdamW(student.gate_parameters(), lr=0.02)
    lambdas = torch.optim.AdamW(lagrangian.parameters(), lr=0.02, maximize=True)
    return teacher, student, heads, lagrangian, (main, gates, lambdas)


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main():
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    groups = [[0, 1, 2], [3, 4, 5, 6], [7, 8, 9], [10, 11, 12]]
    teacher, student, heads, lagrangian, optimizers = build(groups)
    loss_fn = DistillationLoss()
    student.train()
    wavs = torch.randn(args.batch, int(args.seconds * 16000))
    wav_lens = torch.ones(args.batch)
    times = {
        "teacher_forward": [],
        "student_forward": [],
        "loss_backward": [],
        "optimizer": [],
        "step": [],
    }
    for step in range(args.warmup + args.steps):
        start = time.perf_counter()
        (hidden, frame_lens), t_teacher = timed(lambda: teacher(wavs, wav_lens))
        targets = group_targets(hidden, groups)
        (s_hidden, _), t_student = timed(lambda: student(wavs, wav_lens))

        def loss_and_backward(
            s_hidden=s_hidden, targets=targets, frame_lens=frame_lens, step=step
        ):
            predictions, aligned = align_frames(heads(s_hidden), targets)
            mask = lengths_to_mask(frame_lens, predictions.shape[2])
            loss, _ = loss_fn(predictions, aligned, mask)
            penalty, _ = lagrangian(student.expected_sparsity(), step)
            (loss + penalty).backward()

        _, t_backward = timed(loss_and_backward)

        def optimizer_steps():
            for optimizer in optimizers:
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)

        _, t_opt = timed(optimizer_steps)
        total = time.perf_counter() - start
        if step >= args.warmup:
            for key, value in zip(
                times, (t_teacher, t_student, t_backward, t_opt, total)
            ):
                times[key].append(value)
    medians = {key: statistics.median(values) for key, values in times.items()}
    audio = args.batch * args.seconds
    result = {
        "machine": f"{platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}",
        "batch": args.batch,
        "seconds_per_utterance": args.seconds,
        "teacher_params": num_params(teacher.model),
        "student_params_without_gates": num_params(student),
        "audio_seconds_per_second": round(audio / medians["step"], 3),
        **{f"median_{key}_s": round(value, 3) for key, value in medians.items()},
    }
    print(json.dumps(result, indent=2))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=2)


if __name__ == "__main__":
    main()
