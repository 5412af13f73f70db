"""Cost of the layer-similarity stage for a WavLM Base+ shaped teacher.

The teacher is a randomly initialised ``WavLMModel`` built from a
``WavLMConfig`` with the Base+ values (768 wide, 12 layers, 12 heads, FFN
3072, 7 conv layers of 512 channels, group-norm feature extractor), so the
cost is that of the real model without downloading it. The audio is synthetic
and speech-like: syllable-length harmonic bursts (random pitch 90-250 Hz) with
pauses and a little noise; durations are uniform in [--min_seconds,
--max_seconds] (10-15 s by default, LibriSpeech-like), batches are sorted by
duration as the analysis loader does. Costs depend on the frame count, not
the content.

Two modes::

    # end to end: compute_layer_similarity as the CLI runs it, one measure
    python benchmarks/bench_similarity.py --num_utterances 100 --measure cka

    # the teacher runs once; every measure variant gets the same hidden states
    python benchmarks/bench_similarity.py --compare --num_utterances 16

Both print a json report (and write it with --output): seconds, seconds per
100 utterances, peak resident memory of the process, and the accumulator
memory bound.
"""

import argparse
import json
import os
import platform
import resource
import time
from pathlib import Path

import numpy as np
import torch

from speechbrain_skill.layer_groups.accumulators import (
    accumulator_memory_bytes,
    make_accumulator,
    select_frames,
)
from speechbrain_skill.layer_groups.similarity import compute_layer_similarity
from speechbrain_skill.lobes.teacher import FrozenSSLTeacher

SAMPLE_RATE = 16000

COMPARE_VARIANTS = {
    "cka (float64)": ("cka", {"product_dtype": torch.float64}, None),
    "cka (float32 products)": ("cka", {"product_dtype": torch.float32}, None),
    "cka, 100 frames/utt": ("cka", {}, 100),
    "cka_minibatch (m=1024)": ("cka_minibatch", {"minibatch_size": 1024}, None),
    "cka_minibatch (m=256)": ("cka_minibatch", {"minibatch_size": 256}, None),
    "cosine": ("cosine", {}, None),
}


def base_plus_teacher(seed=0):
    from transformers import WavLMConfig, WavLMModel

    config = WavLMConfig(
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
        hidden_act="gelu",
        conv_dim=(512,) * 7,
        conv_kernel=(10, 3, 3, 3, 3, 2, 2),
        conv_stride=(5, 2, 2, 2, 2, 2, 2),
        conv_bias=False,
        feat_extract_norm="group",
        num_conv_pos_embeddings=128,
        num_conv_pos_embedding_groups=16,
        num_buckets=320,
        max_bucket_distance=800,
        do_stable_layer_norm=False,
        layerdrop=0.0,
    )
    torch.manual_seed(seed)
    return FrozenSSLTeacher(WavLMModel(config), normalize_waveform=False)


def speech_like(seconds, rng):
    """Syllable-rate harmonic bursts with pauses and background noise."""
    total = int(seconds * SAMPLE_RATE)
    audio = 0.003 * rng.standard_normal(total)
    position = 0
    while position < total:
        length = int(rng.uniform(0.12, 0.3) * SAMPLE_RATE)
        t = np.arange(min(length, total - position)) / SAMPLE_RATE
        f0 = rng.uniform(90, 250) * (1 + 0.1 * np.sin(2 * np.pi * 3 * t))
        phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
        burst = sum(np.sin(h * phase) / h for h in range(1, 6))
        audio[position : position + t.size] += 0.2 * burst * np.hanning(t.size)
        position += t.size + int(rng.uniform(0.02, 0.25) * SAMPLE_RATE)
    return audio.astype(np.float32)


def make_batches(num_utterances, batch_size, min_seconds, max_seconds, seed):
    rng = np.random.default_rng(seed)
    durations = np.sort(rng.uniform(min_seconds, max_seconds, num_utterances))
    batches = []
    for start in range(0, num_utterances, batch_size):
        signals = [speech_like(d, rng) for d in durations[start : start + batch_size]]
        longest = max(s.size for s in signals)
        wavs = torch.zeros(len(signals), longest)
        for index, signal in enumerate(signals):
            wavs[index, : signal.size] = torch.from_numpy(signal)
        lens = torch.tensor([s.size / longest for s in signals])
        batches.append((wavs, lens))
    return batches, float(durations.sum())


class Clock:
    """Accumulates wall time and process CPU time (all threads) of sections.

    On a shared machine the wall time depends on the other jobs; the CPU time
    much less: ``cpu / threads`` approximates the wall time on idle cores.
    """

    def __init__(self):
        self.wall = 0.0
        self.cpu = 0.0

    def __enter__(self):
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall += time.perf_counter() - self._wall
        self.cpu += time.process_time() - self._cpu

    def report(self, count, prefix=""):
        return {
            f"{prefix}wall_s": round(self.wall, 1),
            f"{prefix}cpu_s": round(self.cpu, 1),
            f"{prefix}wall_s_per_100_utts": per_100(self.wall, count),
            f"{prefix}cpu_s_per_100_utts": per_100(self.cpu, count),
        }


class TimedTeacher:
    """Wraps the teacher to time its forward passes."""

    def __init__(self, teacher):
        self.teacher = teacher
        self.clock = Clock()
        self.num_hidden_states = teacher.num_hidden_states

    def __call__(self, wavs, wav_lens):
        with self.clock:
            return self.teacher(wavs, wav_lens)


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def per_100(seconds, count):
    return round(seconds * 100 / count, 1)


def end_to_end(args, teacher, batches, count):
    timed = TimedTeacher(teacher)
    options = {"minibatch_size": args.minibatch_size} if args.minibatch_size else {}
    if args.float32_products:
        options["product_dtype"] = torch.float32
    total = Clock()
    with total:
        matrix, stats = compute_layer_similarity(
            timed,
            batches,
            measure=args.measure,
            max_frames_per_utterance=args.max_frames_per_utterance,
            progress=not args.no_progress,
            return_stats=True,
            **options,
        )
    similarity = Clock()
    similarity.wall = total.wall - timed.clock.wall
    similarity.cpu = total.cpu - timed.clock.cpu
    return {
        "measure": args.measure,
        "options": {key: str(value) for key, value in options.items()},
        "max_frames_per_utterance": args.max_frames_per_utterance,
        "frames_used": stats.num_frames_used,
        **total.report(count, "total_"),
        **timed.clock.report(count, "teacher_"),
        **similarity.report(count, "similarity_"),
        "accumulator_bound_mb": round(
            accumulator_memory_bytes(13, 768, args.measure, **_bound_options(options))
            / 1e6
        ),
        "min_offdiagonal": round(float(matrix[~np.eye(13, dtype=bool)].min()), 4),
    }


def compare(args, teacher, batches, count):
    accumulators = {
        name: make_accumulator(measure, **options)
        for name, (measure, options, _) in COMPARE_VARIANTS.items()
    }
    clocks = {name: Clock() for name in COMPARE_VARIANTS}
    teacher_clock = Clock()
    generator = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        for index, (wavs, lens) in enumerate(batches):
            with teacher_clock:
                hidden, frame_lens = teacher(wavs, lens)
            for name, (_, _, max_frames) in COMPARE_VARIANTS.items():
                with clocks[name]:
                    frames = select_frames(hidden, frame_lens, max_frames, generator)
                    accumulators[name].update(frames)
            print(f"batch {index + 1}/{len(batches)}", flush=True)
    results = {}
    reference = None
    for name, accumulator in accumulators.items():
        with clocks[name]:
            matrix = accumulator.compute()
        reference = matrix if reference is None else reference
        measure, options, _ = COMPARE_VARIANTS[name]
        results[name] = {
            **clocks[name].report(count),
            "accumulator_bound_mb": round(
                accumulator_memory_bytes(13, 768, measure, **_bound_options(options))
                / 1e6
            ),
            "max_abs_diff_vs_cka_float64": round(
                float(np.abs(matrix - reference).max()), 6
            ),
        }
    return {**teacher_clock.report(count, "teacher_"), "variants": results}


def _bound_options(options):
    return {k: v for k, v in options.items() if k == "minibatch_size"}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num_utterances", type=int, default=100)
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--min_seconds", type=float, default=10.0)
    parser.add_argument("--max_seconds", type=float, default=15.0)
    parser.add_argument("--measure", default="cka")
    parser.add_argument("--minibatch_size", type=int, default=None)
    parser.add_argument("--float32_products", action="store_true")
    parser.add_argument("--max_frames_per_utterance", type=int, default=None)
    parser.add_argument("--compare", action="store_true")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no_progress", action="store_true")
    parser.add_argument("--output", default=None, help="json report path")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    teacher = base_plus_teacher(args.seed)
    batches, audio_seconds = make_batches(
        args.num_utterances,
        args.batch_size,
        args.min_seconds,
        args.max_seconds,
        args.seed,
    )
    report = {
        "teacher": "random WavLM Base+ shape (WavLMConfig, 94.4M params)",
        "audio": (
            f"{args.num_utterances} synthetic speech-like utterances, uniform "
            f"{args.min_seconds}-{args.max_seconds} s, {audio_seconds:.0f} s total"
        ),
        "batch_size": args.batch_size,
        "torch_threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "rss_before_mb": round(peak_rss_mb()),
        "load_average_at_start": round(os.getloadavg()[0], 2),
    }
    if args.compare:
        report.update(compare(args, teacher, batches, args.num_utterances))
    else:
        report.update(end_to_end(args, teacher, batches, args.num_utterances))
    report["peak_rss_mb"] = round(peak_rss_mb())
    report["load_average_at_end"] = round(os.getloadavg()[0], 2)
    text = json.dumps(report, indent=2)
    print(text)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text + "\n")


if __name__ == "__main__":
    main()
