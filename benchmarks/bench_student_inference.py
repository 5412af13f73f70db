"""CPU inference time: WavLM Base+ teacher vs pruned and DistilHuBERT-shaped students.

Models (random weights: only shapes matter for timing):

- teacher: Hugging Face ``WavLMModel`` with WavLM Base+ shapes, all hidden states;
- student-unpruned: our ``PrunableSSLEncoder`` imported from that teacher;
- student-0.75: the same, materialised at ~0.75 sparsity (conv channels
  halved, 5 of 12 heads per layer, FFN width solved for the target);
- distilhubert-shape: our student with HuBERT Base shapes and 2 layers.

Batch 1, 10 s of audio by default (``--batch``, ``--seconds``). Runs are
interleaved across models (round robin) so that load changes on a shared
machine hit all of them alike; the median per model is reported with the
speed-up over the teacher.

Usage::

    python benchmarks/bench_student_inference.py --repeats 7 --json results.json
"""

import argparse
import json
import os
import platform
import statistics
import time

import torch

from speechbrain_skill.lobes.student import (
    PrunableSSLEncoder,
    leading_unit_masks,
    num_params,
    student_config_from_hf,
)

SAMPLE_RATE = 16000


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="audio length")
    parser.add_argument("--batch", type=int, default=1, help="utterances per call")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per model")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs per model")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--target-sparsity", type=float, default=0.75)
    parser.add_argument("--conv-channels", type=int, default=256)
    parser.add_argument("--heads", type=int, default=5)
    parser.add_argument("--json", default=None, help="write the results here")
    return parser.parse_args()


def solve_ffn_width(student, conv_channels, heads, target_sparsity):
    """Uniform FFN width whose parameter count is closest to the target sparsity."""
    config = student.config
    budget = (1.0 - target_sparsity) * config.unpruned_num_params
    best = None
    for width in range(max(config.ffn_dims) + 1):
        masks = leading_unit_masks(config, conv_channels, heads, width)
        count = student.num_params_for_masks(masks)
        if best is None or abs(count - budget) < abs(best[1] - budget):
            best = (width, count, masks)
        if count > budget:
            break
    return best


def build_models(args):
    from transformers import HubertConfig, WavLMConfig, WavLMModel

    torch.manual_seed(0)
    teacher = WavLMModel(WavLMConfig(layerdrop=0.0)).eval()
    unpruned = PrunableSSLEncoder.from_hf(teacher)
    width, count, masks = solve_ffn_width(
        unpruned, args.conv_channels, args.heads, args.target_sparsity
    )
    pruned = unpruned.prune(masks)
    assert num_params(pruned) == count
    distil = PrunableSSLEncoder(
        student_config_from_hf(HubertConfig(layerdrop=0.0), num_layers=2)
    ).eval()

    def run_teacher(wav):
        return teacher(wav, output_hidden_states=True).hidden_states

    # masked_spec_embed is a pre-training vector, unused at inference.
    teacher_params = sum(
        p.numel() for n, p in teacher.named_parameters() if "masked_spec" not in n
    )
    pruned_dims = dict(
        conv_channels=args.conv_channels, heads=args.heads, ffn_dim=width
    )
    models = {
        "teacher (HF WavLM Base+)": (run_teacher, teacher_params, {}),
        "student unpruned (WavLM Base+)": (unpruned, num_params(unpruned), {}),
        "student 0.75 sparsity": (pruned, count, pruned_dims),
        "DistilHuBERT-shaped (2 layers)": (distil, num_params(distil), {}),
    }
    return models, unpruned.config.unpruned_num_params


def main():
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    models, unpruned_count = build_models(args)
    wav = torch.randn(args.batch, int(args.seconds * SAMPLE_RATE))
    times = {name: [] for name in models}
    with torch.inference_mode():
        for _ in range(args.warmup):
            for run, _, _ in models.values():
                run(wav)
        for _ in range(args.repeats):
            for name, (run, _, _) in models.items():
                start = time.perf_counter()
                run(wav)
                times[name].append(time.perf_counter() - start)

    teacher_median = statistics.median(times["teacher (HF WavLM Base+)"])
    rows = []
    for name, (_, params, dims) in models.items():
        median = statistics.median(times[name])
        rows.append(
            dict(
                model=name,
                params=params,
                sparsity=1.0 - params / unpruned_count,
                median_s=median,
                min_s=min(times[name]),
                speedup_vs_teacher=teacher_median / median,
                dims=dims,
            )
        )
    info = dict(
        torch=torch.__version__,
        threads=torch.get_num_threads(),
        cpu=platform.processor() or platform.machine(),
        cpu_count=os.cpu_count(),
        audio_seconds=args.seconds,
        batch=args.batch,
        repeats=args.repeats,
        load_average=os.getloadavg(),
    )
    print(json.dumps(info))
    print("| model | params | sparsity | median s | min s | speed-up vs teacher |")
    print("|---|---:|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['model']} | {row['params']:,} | {row['sparsity']:.4f} "
            f"| {row['median_s']:.3f} | {row['min_s']:.3f} "
            f"| {row['speedup_vs_teacher']:.2f}x |"
        )
    print("0.75-sparsity dims:", rows[2]["dims"])
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(dict(info=info, rows=rows, times=times), handle, indent=2)


if __name__ == "__main__":
    main()
