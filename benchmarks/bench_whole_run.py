"""Time to a student: a whole distill + prune run and the final stage, ours vs DPHuBERT.

Runs the DPHuBERT reference (its model, hard-concrete gates, ``DistillModule``
loss, Lagrangian, optimizer groups and scheduler, imported at run time from a
checkout given with ``--reference``; nothing of it is copied here) next to
this project's :class:`PruningDistillationBrain`, with everything
:mod:`reference_parity` makes identical: ONE randomly initialised HuBERT-shaped
teacher imported into both (HuBERT rather than WavLM so that both count the
same parameters, see reference_parity.py; the widths are WavLM Base+'s by
default: hidden 768, 12 heads, FFN 3072, conv 512 channels, with
``--num_layers`` layers), the same batches, the same initial gates and the
same gate noise at every step, targets ``--distill_layers`` with the
reference's projection sharing.

Schedule: the reference's 50k-step one scaled to ``--steps`` (lr warmup 30 %,
target warmup 10 %, linear decay to 0), ``--reg_lr`` for gates and
multipliers. The two steps alternate (one of each per step, the order
swapped every step) so that both see the same machine load; each step is
timed by wall clock, with the teacher and student forwards timed by hooks.

Then both materialise their students (materialised sizes compared like for
like, see :func:`reference_parity.materialised_sizes`) and run the final
distillation the same way for ``--final-steps`` steps (the reference's
25k-step schedule scaled: lr 1e-4, warmup 20 %, no gates): ours trains the
materialised student, the reference its own pruned student in a
``DistillModule`` with ``use_reg=False`` (what its final_distill.py runs).

Reported: wall time of each stage per implementation and the ratio
reference / ours (> 1: ours is faster), the sparsity trajectories of both,
per tenth of the run the mean step time of each and ours split into teacher
forward, student forward and the rest, the fraction of gate samples exactly
0 in ours, and the peak accelerator memory of each when on CUDA.

``--device cuda --precision bf16|fp16`` runs both on a GPU (ours with
SpeechBrain's autocast and gradient scaler; the reference under autocast with
a ``GradScaler`` for fp16, as Lightning's ``precision=16`` does).

Usage (docs/distillation.md has the measured output)::

    python benchmarks/bench_whole_run.py --reference /work/ref/DPHuBERT \\
        --audio /work/shared/real_audio/librispeech/train-clean-100 \\
        --num_layers 4 --steps 200 --final-steps 100 --json whole_run.json
    # the table of a past run again, and a PNG of its trajectories
    python benchmarks/bench_whole_run.py --table whole_run.json whole_run.png
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reference_parity as parity  # noqa: E402
from bench_distill_throughput import ForwardTimer  # noqa: E402

from speechbrain_skill.distillation.brains import DistillationBrain  # noqa: E402

FINAL_LR = 1e-4


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--reference", default=None, help="checkout of pyf98/DPHuBERT (none: ours only)"
    )
    parser.add_argument("--audio", default=None, help="16 kHz .flac folder (or noise)")
    parser.add_argument("--steps", type=int, default=200, help="distill + prune steps")
    parser.add_argument("--final-steps", type=int, default=None, help="default N/2")
    parser.add_argument("--num_layers", type=int, default=4)
    parser.add_argument("--hidden_size", type=int, default=768)
    parser.add_argument("--num_heads", type=int, default=12)
    parser.add_argument("--intermediate_size", type=int, default=3072)
    parser.add_argument("--conv_channels", type=int, default=512)
    parser.add_argument("--pos_conv_kernel", type=int, default=128)
    parser.add_argument("--pos_conv_groups", type=int, default=16)
    parser.add_argument(
        "--distill_layers",
        default=None,
        help="reference syntax (default: 0 alone, then thirds of the layers sharing)",
    )
    parser.add_argument("--batch_size", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--reg_lr", type=float, default=0.1)
    parser.add_argument("--target_sparsity", type=float, default=0.75)
    parser.add_argument("--clip", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32")
    parser.add_argument(
        "--unfused",
        action="store_true",
        help="ours with the for-loop AdamW (default: fused, as the recipe yamls)",
    )
    parser.add_argument("--json", default=None, help="write all numbers here")
    args = parser.parse_args(argv)
    args.fused = not args.unfused
    if args.distill_layers is None:
        n = args.num_layers
        thirds = sorted({max(1, round(n * k / 3)) for k in (1, 2, 3)})
        args.distill_layers = "0." + ",".join(map(str, thirds))
    if args.final_steps is None:
        args.final_steps = max(1, args.steps // 2)
    args.lr_warmup = round(0.3 * args.steps)
    args.sparsity_warmup = round(0.1 * args.steps)
    args.conv_index = 6
    return args


class Clock:
    """Wall-clock seconds of a call, synchronising CUDA; peak memory per name.

    Process CPU seconds of each call go to ``cpu[name]`` (at one thread the
    measure of work least disturbed by other processes on a shared machine).
    """

    def __init__(self, device):
        self.cuda = torch.device(device).type == "cuda"
        self.peak = {}
        self.cpu = {}

    def sync(self):
        if self.cuda:
            torch.cuda.synchronize()

    def __call__(self, name, function):
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
        self.sync()
        start, start_cpu = time.perf_counter(), time.process_time()
        result = function()
        self.sync()
        elapsed = time.perf_counter() - start
        cpu = self.cpu.setdefault(name, [])
        cpu.append(time.process_time() - start_cpu)
        if self.cuda:
            peak = torch.cuda.max_memory_allocated() / 2**30
            self.peak[name] = max(self.peak.get(name, 0.0), peak)
        return result, elapsed


class ReferenceTrainer:
    """What Lightning's automatic optimisation does around the reference's step."""

    def __init__(self, module, args):
        device, precision = args.device, args.precision
        self.module = module.to(device)
        self.clip = args.clip
        config = module.configure_optimizers()
        self.optimizer = config["optimizer"]
        self.scheduler = config["lr_scheduler"]["scheduler"]
        self.params = [p for g in self.optimizer.param_groups for p in g["params"]]
        self.device = torch.device(device)
        dtypes = {"bf16": torch.bfloat16, "fp16": torch.float16}
        self.dtype = dtypes.get(precision)
        self.scaler = torch.amp.GradScaler(
            self.device.type, enabled=precision == "fp16"
        )

    def __call__(self, wavs, step):
        module = self.module
        module.global_step = step
        wavs = wavs.to(self.device)
        lengths = torch.full((len(wavs),), wavs.shape[1], device=self.device)
        dtype, enabled = self.dtype or torch.float32, self.dtype is not None
        with torch.autocast(self.device.type, dtype=dtype, enabled=enabled):
            loss = module.training_step((wavs, lengths), step)
        self.optimizer.zero_grad()
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.params, self.clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return float(loss)


def zero_fraction(noise):
    """Fraction of our gate samples of this step (this noise) that are exactly 0."""
    zeros = total = 0
    with torch.no_grad():
        for (_, gate), uniform in zip(noise.pairs, noise.noise):
            zeros += int((gate.sample(uniform=uniform) == 0).sum())
            total += gate.num_units
    return zeros / total


def tenths(history, keys):
    """Mean of each key over every tenth of the run."""
    rows, size = [], max(1, len(history) // 10)
    for start in range(0, len(history), size):
        chunk = history[start : start + size]
        row = {"steps": [chunk[0]["step"], chunk[-1]["step"]]}
        for key in keys:
            values = [h[key] for h in chunk if h.get(key) is not None]
            row[key] = round(statistics.fmean(values), 4) if values else None
        rows.append(row)
    return rows


def interleaved(step, runs, clock, stage):
    """Run each named callable once, the order swapped every step; seconds, values."""
    order = list(runs) if step % 2 == 0 else list(runs)[::-1]
    seconds, values = {}, {}
    for name in order:
        values[name], seconds[name] = clock(f"{stage}_{name}", runs[name])
    return seconds, values


def prune_stage(args, ref, brain, noise, batches, clock):
    """Both distill + prune runs (ours alone when ``ref`` is None), step by step."""
    trainer = ReferenceTrainer(ref, args) if ref is not None else None
    timers = {
        "teacher_forward": ForwardTimer(brain.modules.teacher, args.device),
        "student_forward": ForwardTimer(brain.student, args.device),
    }
    brain.on_fit_start()
    history = []
    for step, wavs in enumerate(batches):
        zeros = None
        if noise is not None:
            noise.draw()
            zeros = zero_fraction(noise)
        for timer in timers.values():
            timer.times.clear()
        runs = {"ours": partial(fit, brain, wavs)}
        if trainer is not None:
            runs["reference"] = partial(trainer, wavs, step)
        seconds, losses = interleaved(step, runs, clock, "prune")
        teacher = sum(timers["teacher_forward"].times)
        student = sum(timers["student_forward"].times)
        history.append(
            {
                "step": step + 1,
                "target": brain.last_parts["target_sparsity"],
                "sparsity_ours": float(brain.last_parts["expected_sparsity"]),
                "sparsity_reference": ref.logged["sparsity_expected"] if ref else None,
                "loss_ours": losses["ours"],
                "loss_reference": losses.get("reference"),
                "seconds_ours": seconds["ours"],
                "seconds_reference": seconds.get("reference"),
                "ours_teacher_s": teacher,
                "ours_student_forward_s": student,
                "ours_rest_s": seconds["ours"] - teacher - student,
                "ours_zero_gate_fraction": zeros,
            }
        )
        if (step + 1) % max(1, len(batches) // 10) == 0:
            h = history[-1]
            print(
                f"prune {step + 1:5d}  sparsity ours {h['sparsity_ours']:.3f} ref "
                f"{h['sparsity_reference']}  seconds so far {totals(history)}  "
                f"load {os.getloadavg()[0]:.1f}",
                flush=True,
            )
    return history


def fit(brain, wavs):
    return float(brain.fit_batch(parity.audio_batch(wavs)))


def pruned_reference_student(reference_model, hf_teacher, ref, kept):
    """The reference's pruned student rebuilt from its pruned config (prune.py).

    Its in-place ``prune()`` leaves the attention modules' head counts as they
    were, so, like the reference's prune.py, a fresh model is built with the
    kept sizes and given the pruned weights.
    """
    config = parity.reference_config(hf_teacher.config, prune=False)
    config.update(
        extractor_conv_layer_config=[
            (channels, kernel, stride)
            for channels, (_, kernel, stride) in zip(
                kept["conv"], config["extractor_conv_layer_config"]
            )
        ],
        encoder_use_attention=[heads > 0 for heads in kept["heads"]],
        encoder_num_heads=kept["heads"],
        encoder_use_feed_forward=[units > 0 for units in kept["ffn"]],
        encoder_ff_interm_features=kept["ffn"],
    )
    student = reference_model.wav2vec2_model(**config)
    student.load_state_dict(ref.student_model.state_dict(), strict=False)
    return student.train()


def final_reference(args, lightning, ref, warmup, student):
    """The reference's final stage (no gates) on its pruned student."""
    module = lightning.DistillModule(
        teacher_model=ref.teacher_model,
        student_model=student,
        distill_mode="layer2layer",
        distill_layers=ref.distill_layers,
        distill_linear_projs=ref.distill_linear_projs,
        distill_loss=ref.distill_loss,
        learning_rate=FINAL_LR,
        weight_decay=0.0,
        warmup_updates=warmup,
        max_updates=args.final_steps,
        use_reg=False,
        reg_learning_rate=None,
        target_sparsity=None,
        sparsity_warmup_updates=None,
        tsv_dir=None,
        train_subset=None,
        seconds_per_batch=None,
        num_workers=0,
    )
    return ReferenceTrainer(module, args)


def final_stage(args, lightning, ref, brain, batches, clock, ref_student=None):
    """Final distillation of both materialised students, interleaved."""
    from speechbrain.nnet.schedulers import LinearWarmupScheduler

    warmup = round(0.2 * args.final_steps)
    pruned = brain.student.eval().prune().train()
    ours = DistillationBrain(
        brain.groups,
        modules={
            "teacher": brain.modules.teacher,
            "student": pruned,
            "heads": brain.modules.heads,
        },
        opt_class=partial(
            torch.optim.AdamW, lr=FINAL_LR, weight_decay=0.0, fused=args.fused
        ),
        hparams=dict(
            distill_loss=brain.hparams.distill_loss,
            lr_annealing=LinearWarmupScheduler(FINAL_LR, warmup, args.final_steps),
            max_steps=args.final_steps,
            log_interval=10**9,
            max_grad_norm=args.clip,
            hidden_state_zero="projection",
        ),
        run_opts={
            "device": args.device,
            "precision": args.precision,
            "noprogressbar": True,
        },
    )
    ours.on_fit_start()
    trainer = None
    if ref is not None:
        trainer = final_reference(args, lightning, ref, warmup, ref_student)
    history = []
    for step, wavs in enumerate(batches):
        runs = {"ours": partial(fit, ours, wavs)}
        if trainer is not None:
            runs["reference"] = partial(trainer, wavs, step)
        seconds, _ = interleaved(step, runs, clock, "final")
        history.append(
            {
                "step": step + 1,
                "seconds_ours": seconds["ours"],
                "seconds_reference": seconds.get("reference"),
            }
        )
    return history, sum(p.numel() for p in pruned.parameters())


def totals(history):
    ours = sum(h["seconds_ours"] for h in history)
    result = {"seconds_ours": round(ours, 2)}
    if history and history[0]["seconds_reference"] is not None:
        reference = sum(h["seconds_reference"] for h in history)
        result["seconds_reference"] = round(reference, 2)
        result["ratio_reference_over_ours"] = round(reference / ours, 3)
    return result


def run(args):
    """The whole benchmark; returns the report dict."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    reference_model = lightning = noise = None
    if args.reference:
        reference_model, lightning = parity.import_reference(args.reference)
    ref, brain, pairs, hf_teacher = parity.build(args, reference_model, lightning)
    if ref is not None:
        noise = parity.FixedNoise(pairs, args.seed + 1, device=args.device)
    batches = parity.make_batches(
        args.steps + args.final_steps,
        args.batch_size,
        args.seconds,
        args.audio,
        args.seed,
    )
    clock = Clock(args.device)
    load = [os.getloadavg()]
    started = time.time()
    prune_history = prune_stage(args, ref, brain, noise, batches[: args.steps], clock)
    load.append(os.getloadavg())
    sizes, ref_student = None, None
    if ref is not None:
        sizes = parity.materialised_sizes(ref, brain)  # prunes ref's in place
        ref_student = pruned_reference_student(
            reference_model, hf_teacher, ref, sizes["kept_reference"]
        )
    final_history, final_params = final_stage(
        args, lightning, ref, brain, batches[args.steps :], clock, ref_student
    )
    load.append(os.getloadavg())
    keys = [
        "target",
        "sparsity_ours",
        "sparsity_reference",
        "seconds_ours",
        "seconds_reference",
        "ours_teacher_s",
        "ours_student_forward_s",
        "ours_rest_s",
        "ours_zero_gate_fraction",
    ]
    audio = args.batch_size * args.seconds
    report = {
        "command": " ".join(sys.argv),
        "machine": f"{platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, torch {torch.__version__}",
        "device": torch.cuda.get_device_name()
        if torch.device(args.device).type == "cuda"
        else "cpu",
        "settings": {k: v for k, v in vars(args).items()},
        "prune": totals(prune_history),
        "final": totals(final_history),
        "audio_seconds_per_second": {
            f"{stage}_{name}": round(
                audio * len(h) / sum(x[f"seconds_{name}"] for x in h), 3
            )
            for stage, h in (("prune", prune_history), ("final", final_history))
            for name in ("ours", "reference")
            if h and h[0][f"seconds_{name}"] is not None
        },
        "materialised": sizes,
        "final_student_params_ours": final_params,
        "peak_memory_gib": {k: round(v, 3) for k, v in clock.peak.items()},
        "process_cpu_seconds": {k: round(sum(v), 2) for k, v in clock.cpu.items()},
        "by_tenth": tenths(prune_history, keys),
        "load_average_start_prune_end_final_end": load,
        "wall_seconds": round(time.time() - started, 1),
        "prune_history": prune_history,
        "final_history": final_history,
    }
    return report


def markdown(report):
    """The per-tenth table of a report (docs/distillation.md)."""
    lines = [
        "| steps | target | sparsity ours / ref | s/step ours / ref | ratio "
        "| ours: teacher / student fwd / rest s | gate samples = 0 |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in report["by_tenth"]:
        ref_s = row["seconds_reference"]
        ratio = f"{ref_s / row['seconds_ours']:.2f}" if ref_s else "-"
        zeros = row["ours_zero_gate_fraction"]
        lines.append(
            f"| {row['steps'][0]}-{row['steps'][1]} | {row['target']:.3f} "
            f"| {row['sparsity_ours']:.3f} / {row['sparsity_reference'] or 0:.3f} "
            f"| {row['seconds_ours']:.2f} / {ref_s or 0:.2f} | {ratio} "
            f"| {row['ours_teacher_s']:.2f} / {row['ours_student_forward_s']:.2f} / "
            f"{row['ours_rest_s']:.2f} | {zeros if zeros is None else f'{zeros:.2f}'} |"
        )
    return "\n".join(lines)


def plot(report, path):
    """PNG: sparsity of both, and seconds per step of both, per step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    history = report["prune_history"]
    steps = [h["step"] for h in history]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    top.plot(steps, [h["sparsity_reference"] for h in history], lw=2.5, alpha=0.6,
             label="reference (DPHuBERT)")  # fmt: skip
    top.plot(steps, [h["sparsity_ours"] for h in history], "k--", lw=1, label="ours")
    top.plot(steps, [h["target"] for h in history], "r", lw=0.8, label="target")
    top.set_ylabel("expected sparsity")
    top.legend()
    for name, style in (("reference", "-"), ("ours", "--")):
        bottom.plot(steps, [h[f"seconds_{name}"] for h in history], style, lw=1,
                    label=name)  # fmt: skip
    bottom.set_ylabel("seconds per step (wall)")
    bottom.set_xlabel("distill + prune step")
    bottom.legend()
    settings = report["settings"]
    fig.suptitle(
        f"{settings['num_layers']} layers at Base+ widths, "
        f"{settings['batch_size']} x {settings['seconds']:g} s, 1 thread"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--table":  # --table JSON [PNG]: a past run's table
        report = json.loads(Path(argv[1]).read_text())
        print(markdown(report))
        if len(argv) > 2:
            plot(report, argv[2])
        return report
    args = parse_args(argv)
    report = run(args)
    short = {k: v for k, v in report.items() if not k.endswith("history")}
    print(json.dumps(short, indent=2))
    print(markdown(report))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
