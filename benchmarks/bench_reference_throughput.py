"""Training throughput of our distill + prune step against the DPHuBERT reference's.

Both steps run in this one process, interleaved (one of ours, one of the
reference's, alternating which goes first), on the same machine, thread
count, weights and input:

* WavLM Base+ shape, random weights (one Hugging Face ``WavLMModel``, its
  dropouts set to the values of the reference's WavLM Base+ conversion:
  attention 0.1, hidden 0.1, projection 0.1, FFN activation 0.0), imported
  into both implementations;
* a batch of ``--batch`` utterances of ``--seconds`` seconds, no padding;
* a student copy with hard-concrete gates on conv channels, heads and FFN
  units, 4 targets (teacher layers 0, 4, 8, 12; DPHuBERT's projections:
  target 0 alone, the other three share one Linear), L1 - cos loss,
  expected-sparsity Lagrangian (target 0.75), backward, gradient clipping
  at norm 10, AdamW.

Ours is one :meth:`PruningDistillationBrain.fit_batch` call, exactly what the
recipe runs per step (``OurStep`` of bench_distill_throughput.py, with the
fused AdamW of the recipe yamls; ``--unfused``: the for-loop AdamW). The
reference's is the code of a DPHuBERT checkout (``--reference``), imported at
run time and never copied:
``DistillModule._step`` (teacher under no_grad, student, projections,
``DistillLoss``, Lagrangian), then what PyTorch Lightning does around it:
backward, ``clip_grad_norm_`` over the optimizer's parameters, the AdamW
from ``configure_optimizers``, ``zero_grad``, the scheduler step. The
reference imports ``pytorch_lightning`` only to subclass
``LightningModule``; when the package is absent a minimal stand-in module
(an ``nn.Module`` with a no-op ``log_dict``) is registered. Its scheduler
passes ``verbose`` to a PyTorch base class that no longer takes it; a
subclass drops that argument.

``--keep-fraction F`` sets every gate of both students to the same state
reached late in pruning: ``log_alpha = +10`` on a random fraction F of the
units of each gate, ``-10`` on the others (samples are then almost always
exactly 1 or 0). Default: fresh gates, as initialised.

``--compile`` runs ours with SpeechBrain's ``--compile`` run option
(teacher and student forwards through ``torch.compile``, eager fallback);
compilation happens in the untimed warm-up pairs.

Printed per thread count: median wall-clock seconds per step of each
implementation, seconds of audio per second, the median of the per-round
ratios reference / ours (> 1: ours is faster), the same for process CPU
seconds (robust to time-slicing by other processes at one thread), and the
1-minute load average before and after.

``--profile`` times nothing: it runs ``torch.profiler`` over two steps of
each (after two warm-up steps) and prints each one's self CPU seconds per
step, the share of the matrix kernels both run on the same shapes
(multiplies, convolutions, CPU flash attention), the top ops, and the bound
that share sets: how much faster than the reference a step doing nothing
but those kernels would be.

Usage::

    python benchmarks/bench_reference_throughput.py --reference ../DPHuBERT \\
        --threads 1 2 --rounds 5
    python benchmarks/bench_reference_throughput.py --reference ../DPHuBERT \\
        --threads 1 --profile
"""

import argparse
import contextlib
import io
import json
import os
import platform
import statistics
import sys
import time
import types

import torch
from bench_distill_throughput import (
    CLIP,
    LAYERS,
    LR,
    MAX_STEPS,
    REG_LR,
    SPARSITY_WARMUP,
    TARGET_SPARSITY,
    WARMUP,
    OurStep,
    hf_teacher,
    set_gates,
)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", required=True, help="DPHuBERT checkout")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=5, help="timed pairs")
    parser.add_argument("--warmup", type=int, default=1, help="untimed pairs")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--keep-fraction", type=float, default=None)
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument(
        "--compile", action="store_true", help="ours with --compile (torch.compile)"
    )
    parser.add_argument(
        "--unfused", action="store_true", help="ours with the for-loop AdamW"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="instead of timing: torch.profiler over 2 steps of each at the first "
        "--threads value; prints the matrix-kernel share and the top ops",
    )
    parser.add_argument("--json", default=None, help="write the results here")
    return parser.parse_args()


def import_reference(checkout):
    """The reference's modules, imported from its checkout."""
    sys.path.insert(0, os.path.abspath(checkout))
    try:
        import pytorch_lightning  # noqa: F401
    except ImportError:
        stand_in = types.ModuleType("pytorch_lightning")

        class LightningModule(torch.nn.Module):
            global_step = 0

            def log_dict(self, *args, **kwargs):
                pass

        stand_in.LightningModule = LightningModule
        sys.modules["pytorch_lightning"] = stand_in
    import lightning
    from wav2vec2.model import wav2vec2_model
    from wav2vec2.utils import import_huggingface_wavlm

    class LinearDecayLRScheduler(lightning.LinearDecayLRScheduler):
        def __init__(self, optimizer, warmup_updates, max_updates, **kwargs):
            self.warmup_updates = warmup_updates
            self.max_updates = max_updates
            torch.optim.lr_scheduler.LRScheduler.__init__(self, optimizer)

    lightning.LinearDecayLRScheduler = LinearDecayLRScheduler
    return lightning, wav2vec2_model, import_huggingface_wavlm


class ReferenceStep:
    """One training step of the reference implementation."""

    def __init__(self, checkout, hf_model, keep_fraction, precision):
        lightning, wav2vec2_model, importer = import_reference(checkout)
        config = importer._get_config_wavlm(hf_model.config)
        with contextlib.redirect_stdout(io.StringIO()):
            teacher = importer._build(config, hf_model).eval()
        for param in teacher.parameters():
            param.requires_grad_(False)
        student = wav2vec2_model(
            **config,
            aux_num_out=None,
            extractor_prune_conv_channels=True,
            encoder_prune_attention_heads=True,
            encoder_prune_feed_forward_intermediate=True,
        )
        student.load_state_dict(teacher.state_dict(), strict=False)
        if keep_fraction is not None:
            set_gates(
                [p for n, p in student.named_parameters() if "log_alpha" in n],
                keep_fraction,
            )
        # distill_layers "0.4,8,12": target 0 alone, the others share a Linear.
        first, shared = torch.nn.Linear(768, 768), torch.nn.Linear(768, 768)
        for linear in (first, shared):
            torch.nn.init.eye_(linear.weight)
            torch.nn.init.zeros_(linear.bias)
        self.module = lightning.DistillModule(
            teacher_model=teacher,
            student_model=student,
            distill_mode="layer2layer",
            distill_layers=LAYERS,
            distill_linear_projs=torch.nn.ModuleList([first, shared, shared, shared]),
            distill_loss=lightning.DistillLoss(0.0, 1.0, 1.0, "raw"),
            learning_rate=LR,
            weight_decay=0.0,
            warmup_updates=WARMUP,
            max_updates=MAX_STEPS,
            use_reg=True,
            reg_learning_rate=REG_LR,
            target_sparsity=TARGET_SPARSITY,
            sparsity_warmup_updates=SPARSITY_WARMUP,
            tsv_dir=".",
            train_subset="train960",
            seconds_per_batch=160,
            num_workers=0,
        ).train()
        setup = self.module.configure_optimizers()
        self.optimizer = setup["optimizer"]
        self.scheduler = setup["lr_scheduler"]["scheduler"]
        self.params = [p for g in self.optimizer.param_groups for p in g["params"]]
        self.precision = precision

    def __call__(self, wavs):
        lengths = torch.full((wavs.shape[0],), wavs.shape[1], dtype=torch.long)
        with torch.autocast("cpu", torch.bfloat16, enabled=self.precision == "bf16"):
            loss = self.module._step((wavs, lengths), 0, "train")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, CLIP)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.module.global_step += 1


def measure(steps, wavs, threads, rounds, warmup):
    """Interleaved wall-clock and process CPU seconds per step of each named step."""
    torch.set_num_threads(threads)
    names = list(steps)
    times = {name: [] for name in names}
    cpu = {name: [] for name in names}
    for index in range(warmup + rounds):
        order = names if index % 2 == 0 else names[::-1]
        for name in order:
            start, start_cpu = time.perf_counter(), time.process_time()
            steps[name](wavs)
            elapsed = time.perf_counter() - start
            if index >= warmup:
                times[name].append(elapsed)
                cpu[name].append(time.process_time() - start_cpu)
    return times, cpu


# The kernels both implementations run on the same shapes (matrix multiplies,
# convolutions, CPU flash attention): the part of a step no overhead removal
# can shorten.
MATRIX_KERNELS = (
    "aten::mm",
    "aten::addmm",
    "aten::bmm",
    "aten::baddbmm",
    "aten::mkldnn_convolution",
    "aten::convolution_backward",
    "aten::_scaled_dot_product_flash_attention_for_cpu",
    "aten::_scaled_dot_product_flash_attention_for_cpu_backward",
)


def profile(steps, wavs, threads, top=15):
    """Self CPU seconds per step of each step, its matrix-kernel share, top ops."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    torch.set_num_threads(threads)
    shares = {}
    for name, step in steps.items():
        step(wavs)
        step(wavs)
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(2):
                step(wavs)
        events = prof.key_averages()
        total = sum(e.self_cpu_time_total for e in events) / 2e6
        matrix = (
            sum(e.self_cpu_time_total for e in events if e.key in MATRIX_KERNELS) / 2e6
        )
        shares[name] = {"self_cpu_s": round(total, 3), "matrix_s": round(matrix, 3)}
        print(f"{name}: {total:.2f} s self CPU per step, matrix kernels {matrix:.2f} s")
        for event in sorted(events, key=lambda e: -e.self_cpu_time_total)[:top]:
            ms = event.self_cpu_time_total / 2e3
            print(f"    {event.key:58s} {ms:8.1f} ms  x{event.count // 2}")
    reference = shares["reference"]
    bound = reference["self_cpu_s"] / reference["matrix_s"]
    print(
        f"bound: a step of nothing but the reference's matrix kernels would be "
        f"{bound:.2f}x faster than the reference"
    )
    return {"threads": threads, "profile": shares, "bound": round(bound, 3)}


def main():
    args = parse_args()
    hf_model = hf_teacher()
    steps = {
        "reference": ReferenceStep(
            args.reference, hf_model, args.keep_fraction, args.precision
        ),
        "ours": OurStep(
            hf_model,
            args.keep_fraction,
            args.precision,
            args.compile,
            fused=not args.unfused,
        ),
    }
    torch.manual_seed(1)
    wavs = torch.randn(args.batch, int(args.seconds * 16000))
    audio = args.batch * args.seconds
    results = []
    if args.profile:
        results.append(profile(steps, wavs, args.threads[0]))
    for threads in [] if args.profile else args.threads:
        load_before = os.getloadavg()[0]
        times, cpu = measure(steps, wavs, threads, args.rounds, args.warmup)
        load_after = os.getloadavg()[0]
        ratios = [r / o for r, o in zip(times["reference"], times["ours"])]
        cpu_ratios = [r / o for r, o in zip(cpu["reference"], cpu["ours"])]
        row = {
            "threads": threads,
            "median_step_s": {
                k: round(statistics.median(v), 3) for k, v in times.items()
            },
            "median_step_cpu_s": {
                k: round(statistics.median(v), 3) for k, v in cpu.items()
            },
            "audio_s_per_s": {
                k: round(audio / statistics.median(v), 3) for k, v in times.items()
            },
            "ratio_reference_over_ours_median": round(statistics.median(ratios), 3),
            "ratios": [round(r, 3) for r in ratios],
            "cpu_ratio_reference_over_ours_median": round(
                statistics.median(cpu_ratios), 3
            ),
            "load_average_1min": [load_before, load_after],
        }
        results.append(row)
        print(json.dumps(row), flush=True)
    summary = {
        "machine": f"{platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, torch {torch.__version__}",
        "batch": args.batch,
        "seconds_per_utterance": args.seconds,
        "keep_fraction": args.keep_fraction,
        "precision": args.precision,
        "compile": args.compile,
        "rounds": args.rounds,
        "results": results,
    }
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(summary, handle, indent=2)


if __name__ == "__main__":
    main()
