"""Everything to measure when a GPU is lent, in one command that needs no edits.

Sections (``--sections``, in this order by default; the JSON
``OUTPUT/gpu_check.json`` is rewritten after each one, so a run stopped by a
time limit still leaves what it finished):

``env``
    torch, CUDA, the device's name and memory, ``nvidia-smi``.
``recipes``
    Every recipe row of ``tests/recipes/*.csv`` (distillation, KWS, SID) with
    its debug flags on a generated built-in corpus and ``--device`` in place of
    the row's ``--device=cpu``; the SKILL WavLM row again in bf16 and (CUDA
    only) fp16. Per run: pass/fail, missing files, wall seconds, and for the
    SKILL rows the layer-groups stage's seconds (from the data manifests'
    modification time to the stage record's). Runs ``--jobs`` at a time.
``throughput``
    Distill + prune steps of ours and of the DPHuBERT reference (when
    ``--reference`` is given) at the WavLM Base+ shape and a 160 s batch
    (10 x 16 s, the reference recipe's ``seconds_per_batch``), fp32, bf16 and
    (CUDA only) fp16: seconds of audio per second (median step after the
    first) and peak accelerator memory of each (bench_whole_run.py).
``prune``
    A distill + prune run of ``--steps`` steps at the Base+ shape (12 layers,
    4 x 10 s batches, the reference's schedule scaled) in bf16 and (CUDA
    only) fp16, then the final stage, ours and the reference interleaved:
    wall time, ratio, sparsity reached, materialised sizes, peak memory. The
    gates' ``log_alpha``, their samples and the Lagrangian stay in fp32 /
    fp64 in ours under autocast.
``quickstart``
    ``scripts/quickstart.sh`` on the device in bf16: wall time, sparsity.

``--tiny`` shrinks every model, batch and step count so that the whole check
runs on a CPU in seconds (``--device cpu --tiny`` is what the test runs).

Usage (on the lent machine, reference checkout optional)::

    python benchmarks/gpu_check.py --output $OUT/gpu --reference ../DPHuBERT
    python benchmarks/gpu_check.py --device cpu --tiny --output /tmp/check
"""

import argparse
import concurrent.futures
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "benchmarks"
SECTIONS = ("env", "recipes", "throughput", "prune", "quickstart")
TINY_MODEL = [
    "--num_layers=2",
    "--hidden_size=32",
    "--num_heads=4",
    "--intermediate_size=64",
    "--conv_channels=16",
    "--pos_conv_kernel=8",
    "--pos_conv_groups=8",
]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", required=True, help="folder for all results")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--reference", default=None, help="DPHuBERT checkout")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=SECTIONS)
    parser.add_argument("--tiny", action="store_true", help="tiny sizes (CPU test)")
    parser.add_argument("--steps", type=int, default=300, help="prune section steps")
    parser.add_argument(
        "--rows", default="", help="only recipe rows whose yaml path contains this"
    )
    parser.add_argument("--jobs", type=int, default=None, help="recipe runs at once")
    parser.add_argument("--timeout", type=float, default=900, help="per subprocess")
    return parser.parse_args(argv)


def precisions(device):
    """fp16 needs CUDA (SpeechBrain refuses it on CPU)."""
    return ["fp32", "bf16", "fp16"] if device.startswith("cuda") else ["fp32", "bf16"]


def environment(args):
    import torch

    info = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "machine": f"{platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs",
        "cuda_available": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info["device"] = props.name
        info["device_memory_gib"] = round(props.total_memory / 2**30, 1)
        info["bf16_supported"] = torch.cuda.is_bf16_supported()
    if shutil.which("nvidia-smi"):
        smi = subprocess.run(["nvidia-smi"], capture_output=True, text=True)
        info["nvidia_smi"] = smi.stdout[-3000:]
    return info


def recipe_runs(args):
    """Every recipe row on the device, the SKILL WavLM row in bf16 and fp16 too."""
    sys.path.insert(0, str(REPO / "tests"))
    sys.path.insert(0, str(REPO / "recipes" / "LibriSpeech"))
    from conftest import SMALL_CORPUS
    from recipe_runner import missing_files, recipe_args, recipe_rows, run_recipe

    from speechbrain_skill.data.synthetic_corpus import generate_corpus

    root = Path(args.output) / "recipes"
    corpus = root / "corpus"
    if not corpus.exists():
        generate_corpus(corpus, **SMALL_CORPUS)
    jobs = []
    for row in recipe_rows():
        if args.rows not in row["Hparam_file"]:
            continue
        for precision in ["fp32"] + (
            precisions(args.device)[1:]
            if row["Hparam_file"].endswith("skill_wavlm.yaml")
            else []
        ):
            jobs.append((row, precision))

    def one(job):
        row, precision = job
        name = f"{Path(row['Hparam_file']).stem}_{precision}"
        output = root / name
        changes = {"device": args.device}
        if precision != "fp32":
            changes["precision"] = precision
        flags = recipe_args(row["Hparam_file"], output, corpus, **changes)
        start = time.time()
        result = {"recipe": row["Hparam_file"], "precision": precision}
        try:
            log = run_recipe(row["Hparam_file"], flags, timeout=args.timeout)
            result["passed"] = True
        except Exception as error:  # noqa: BLE001 - every failure is a result
            log = str(error)
            result["passed"] = False
        result["seconds"] = round(time.time() - start, 1)
        result["missing_files"] = missing_files(row, output)
        result["passed"] &= not result["missing_files"]
        record = output / "stages" / "layer_groups.json"
        manifests = list((output / "save").glob("*.csv"))
        if record.exists() and manifests:
            started = max(path.stat().st_mtime for path in manifests)
            result["layer_groups_stage_s"] = round(record.stat().st_mtime - started, 2)
        (root / f"{name}.log").write_text(log)
        if not result["passed"]:
            result["log_tail"] = log[-2000:]
        return result

    workers = args.jobs or (4 if args.device.startswith("cuda") else 1)
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        return list(pool.map(one, jobs))


def whole_run(args, name, options):
    """bench_whole_run.py in a subprocess: (summary without per-step rows, report).

    The report is None when the run failed (the summary then holds the error).
    """
    target = Path(args.output) / f"{name}.json"
    command = [
        sys.executable,
        str(BENCH / "bench_whole_run.py"),
        f"--device={args.device}",
        f"--json={target}",
        *(TINY_MODEL if args.tiny else ["--num_layers=12"]),
        *options,
    ]
    if args.reference:
        command.append(f"--reference={args.reference}")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    start = time.time()
    done = subprocess.run(
        command, capture_output=True, text=True, env=env, timeout=args.timeout
    )
    result = {"command": " ".join(command[1:]), "seconds": round(time.time() - start)}
    if done.returncode != 0 or not target.exists():
        result["error"] = (done.stdout + done.stderr)[-3000:]
        return result, None
    report = json.loads(target.read_text())
    result.update({k: v for k, v in report.items() if not k.endswith("history")})
    return result, report


def throughput(args):
    """Seconds of audio per second at a 160 s batch, per precision and side."""
    batch, seconds, steps = (2, 1.0, 3) if args.tiny else (10, 16.0, 6)
    rows = []
    for precision in precisions(args.device):
        outcome = whole_run(
            args,
            f"throughput_{precision}",
            [
                f"--precision={precision}",
                f"--batch_size={batch}",
                f"--seconds={seconds}",
                f"--steps={steps}",
                "--final-steps=2",
            ],
        )
        result, report = outcome
        if report is None:
            rows.append({"precision": precision, **result})
            continue
        row = {"precision": precision, "batch_seconds": batch * seconds}
        for side in ("ours", "reference"):
            times = [h[f"seconds_{side}"] for h in report["prune_history"][1:]]
            if times and times[0] is not None:
                median = statistics.median(times)
                row[f"{side}_median_step_s"] = round(median, 4)
                row[f"{side}_audio_s_per_s"] = round(batch * seconds / median, 2)
        row["peak_memory_gib"] = result["peak_memory_gib"]
        row["load_average"] = result["load_average_start_prune_end_final_end"]
        rows.append(row)
    return rows


def prune_runs(args):
    """A few hundred distill + prune steps at the Base+ shape, bf16 and fp16."""
    batch, seconds = (1, 1.0) if args.tiny else (4, 10.0)
    steps = 6 if args.tiny else args.steps
    rows = []
    for precision in precisions(args.device)[1:]:
        outcome = whole_run(
            args,
            f"prune_{precision}",
            [
                f"--precision={precision}",
                f"--batch_size={batch}",
                f"--seconds={seconds}",
                f"--steps={steps}",
                f"--final-steps={max(2, steps // 10)}",
            ],
        )
        rows.append({"precision": precision, **outcome[0]})
    return rows


def quickstart(args):
    """The quick start on the device in bf16 (tiny: 4 + 2 steps)."""
    output = Path(args.output) / "quickstart"
    command = ["bash", str(REPO / "scripts" / "quickstart.sh"), str(output)]
    command += [f"--device={args.device}", "--precision=bf16"]
    env = dict(os.environ, PY=sys.executable, PYTHONPATH=str(REPO))
    if args.tiny:
        env.update(PRUNE_STEPS="4", FINAL_STEPS="2", SPARSITY_WARMUP="2")
    start = time.time()
    done = subprocess.run(
        command, capture_output=True, text=True, env=env, timeout=args.timeout
    )
    result = {"command": " ".join(command), "seconds": round(time.time() - start, 1)}
    result["passed"] = done.returncode == 0
    report = output / "student" / "report.json"
    if report.exists():
        result["report"] = json.loads(report.read_text())
    if not result["passed"]:
        result["log_tail"] = (done.stdout + done.stderr)[-3000:]
    return result


def main(argv=None):
    args = parse_args(argv)
    Path(args.output).mkdir(parents=True, exist_ok=True)
    summary = {"device": args.device, "tiny": args.tiny, "reference": args.reference}
    functions = {
        "env": environment,
        "recipes": recipe_runs,
        "throughput": throughput,
        "prune": prune_runs,
        "quickstart": quickstart,
    }
    target = Path(args.output) / "gpu_check.json"
    for section in args.sections:
        start = time.time()
        print(f"== {section}", flush=True)
        try:
            summary[section] = functions[section](args)
        except Exception as error:  # noqa: BLE001 - keep the other sections
            summary[section] = {"error": repr(error)}
        summary[f"{section}_seconds"] = round(time.time() - start, 1)
        summary[f"{section}_load_average"] = os.getloadavg()
        target.write_text(json.dumps(summary, indent=2, default=str))
        print(json.dumps(summary[section], indent=1, default=str)[:4000], flush=True)
    return summary


if __name__ == "__main__":
    main()
