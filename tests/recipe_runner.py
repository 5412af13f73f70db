"""Run the distillation recipe on the small built-in corpus with tiny settings."""

import os
import subprocess
import sys
from pathlib import Path

RECIPE = (
    Path(__file__).resolve().parent.parent / "recipes" / "LibriSpeech" / "distillation"
)


def tiny_overrides(corpus, output, teacher, **extra):
    """Command-line overrides that make a run take seconds."""
    settings = dict(
        data_folder=corpus,
        output_folder=output,
        teacher_source=teacher,
        device="cpu",
        train_splits='["train-clean-100"]',
        dev_splits='["dev-clean"]',
        num_groups=3,
        calibration_utterances=8,
        calibration_batch_size=4,
        min_duration=0.5,
        max_crop_seconds=2.0,
        max_batch_seconds=4.0,
        num_buckets=2,
        num_workers=0,
        valid_max_utterances=4,
        valid_batch_size=4,
        prune_steps=8,
        prune_warmup_steps=2,
        sparsity_warmup_steps=4,
        final_steps=4,
        final_warmup_steps=1,
        log_interval=1,
        ckpt_interval_minutes=0,
        noprogressbar=True,
    )
    settings.update(extra)
    args = []
    for key, value in settings.items():
        if value is True and key == "noprogressbar":
            args.append(f"--{key}")
        else:
            args.append(f"--{key}={value}")
    return args


# Keys of the pruning / clustering stages, absent from the yamls without pruning.
PRUNING_KEYS = (
    "num_groups",
    "calibration_utterances",
    "calibration_batch_size",
    "prune_steps",
    "prune_warmup_steps",
    "sparsity_warmup_steps",
)


def distil_overrides(corpus, output, teacher, **extra):
    """Tiny overrides for yamls without pruning (DistilHuBERT; 4-layer teacher)."""
    args = tiny_overrides(corpus, output, teacher, **extra)
    args = [a for a in args if a[2:].split("=")[0] not in PRUNING_KEYS]
    return [*args, "--groups=[[2],[3],[4]]"]


def run_recipe(yaml, args, timeout=600, background=False):
    """Run train.py in a subprocess from the recipe folder."""
    cmd = [sys.executable, "train.py", f"hparams/{yaml}", *args]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    if background:
        return subprocess.Popen(
            cmd,
            cwd=RECIPE,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
    result = subprocess.run(
        cmd, cwd=RECIPE, env=env, capture_output=True, text=True, timeout=timeout
    )
    if result.returncode != 0:
        raise AssertionError(
            f"train.py failed:\n{result.stdout[-4000:]}\n{result.stderr[-8000:]}"
        )
    return result.stdout + result.stderr
