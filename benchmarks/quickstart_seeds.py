"""Where the quick start lands, over several seeds: sparsity reached vs target.

Runs ``scripts/quickstart.sh`` (the whole quick start: built-in corpus, shipped
teacher, its default budget and settings) once per seed, each in its own
output folder, ``--jobs`` at a time with one CPU thread each, then prints per
seed the expected sparsity at the last pruning step, the materialised
sparsity of the exported student (``report.json``) and the distance to the
target, and their spread. Any other option is passed to the quick start
(e.g. ``--sparsity_warmup_steps 300``), so settings can be compared on the
same seeds.

Usage::

    python benchmarks/quickstart_seeds.py --output /tmp/seeds --seeds 1986 2 3 4
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", required=True, help="one folder per seed here")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1986, 2, 3, 4])
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time")
    parser.add_argument("--json", default=None, help="write the results here")
    return parser.parse_known_args()


def run_seed(output, seed, extra):
    """Run the quick start with ``seed``; return what it reached."""
    folder = Path(output) / f"seed_{seed}"
    env = dict(os.environ, THREADS="1")
    command = ["bash", str(ROOT / "scripts/quickstart.sh"), str(folder)]
    command += [f"--seed={seed}", *extra]
    with open(f"{folder}.log", "w") as log:
        subprocess.run(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, check=True
        )
    report = json.loads((folder / "student" / "report.json").read_text())
    with open(folder / "prune" / "history.jsonl") as handle:
        last = json.loads(handle.readlines()[-1])
    return {
        "seed": seed,
        "expected_sparsity": round(last["expected_sparsity"], 4),
        "sparsity_reached": report["sparsity_reached"],
        "target_sparsity": report["target_sparsity"],
        "miss": round(report["sparsity_reached"] - report["target_sparsity"], 4),
    }


def main():
    args, extra = parse_args()
    Path(args.output).mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(lambda s: run_seed(args.output, s, extra), args.seeds))
    for row in rows:
        print(json.dumps(row))
    misses = [abs(row["miss"]) for row in rows]
    reached = [row["sparsity_reached"] for row in rows]
    summary = {
        "settings": extra,
        "seeds": args.seeds,
        "rows": rows,
        "reached_min_max": [min(reached), max(reached)],
        "reached_median": statistics.median(reached),
        "largest_miss": max(misses),
        "within_0.01": sum(miss <= 0.01 for miss in misses),
        "load_average_1min": os.getloadavg()[0],
    }
    print(json.dumps({k: v for k, v in summary.items() if k != "rows"}))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
