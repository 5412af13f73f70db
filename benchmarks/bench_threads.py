"""Seconds per downstream training step for several torch thread counts, interleaved.

    python benchmarks/bench_threads.py --threads 1 2 --rounds 3 --steps 10

One step: the shipped tiny teacher as a frozen upstream (weighted sum of its
hidden states) + a pooled linear classifier, forward and backward, on a batch
of 8 three-second waveforms (a keyword-spotting / speaker-ID step on CPU).
The thread counts take turns within each round, so that other jobs on a
shared machine slow them alike; the median over rounds is reported, with the
load average.
"""

import argparse
import json
import os
import statistics
import time

import torch

from speechbrain_skill.downstream.heads import PooledClassifier
from speechbrain_skill.lobes.upstream import SSLUpstream


def time_steps(upstream, head, optimizer, wavs, lens, labels, steps):
    """Mean seconds of one training step over ``steps`` steps."""
    start = time.perf_counter()
    for _ in range(steps):
        feats, feat_lens = upstream(wavs, lens, return_lengths=True)
        loss = torch.nn.functional.nll_loss(head(feats, feat_lens), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return (time.perf_counter() - start) / steps


def main(argv=None):
    """Run the interleaved rounds and print one line per thread count."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--source", default="builtin:tiny-wavlm")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    upstream = SSLUpstream(args.source)
    head = PooledClassifier(upstream.output_size, 12, 256)
    optimizer = torch.optim.Adam(
        [p for p in [*upstream.parameters(), *head.parameters()] if p.requires_grad]
    )
    generator = torch.Generator().manual_seed(0)
    wavs = torch.randn(8, 48000, generator=generator)
    lens = torch.linspace(0.6, 1.0, 8)
    labels = torch.randint(0, 12, (8,), generator=generator)
    load_start = os.getloadavg()
    times = {n: [] for n in args.threads}
    for _ in range(args.rounds):
        for count in args.threads:
            torch.set_num_threads(count)
            times[count].append(
                time_steps(upstream, head, optimizer, wavs, lens, labels, args.steps)
            )
    result = dict(
        cores=os.cpu_count(),
        load_average=[load_start, os.getloadavg()],
        seconds_per_step={n: round(statistics.median(t), 4) for n, t in times.items()},
        all_rounds={n: [round(x, 4) for x in t] for n, t in times.items()},
    )
    for count, seconds in result["seconds_per_step"].items():
        print(f"{count} thread(s): {seconds:.3f} s per step (median of {args.rounds})")
    print(f"load average {load_start} -> {os.getloadavg()}, {os.cpu_count()} cores")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=2)


if __name__ == "__main__":
    main()
