"""Two-process DDP (gloo, CPU) run of the SKILL recipe on the built-in corpus."""

import json
import os
import subprocess
import sys

from recipe_runner import RECIPE, tiny_overrides


def test_torchrun_two_processes_gloo(builtin_corpus, tiny_wavlm, tmp_path):
    args = tiny_overrides(
        builtin_corpus, tmp_path, tiny_wavlm, prune_steps=6, final_steps=3
    )
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_port=29533",
        "train.py",
        "hparams/skill_wavlm.yaml",
        "--distributed_backend=gloo",
        *args,
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(
        cmd, cwd=RECIPE, env=env, capture_output=True, text=True, timeout=600
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-6000:]
    # One summary (main process), both ranks trained: the train log says DDP wrapped.
    assert log.count("distillation summary") == 1
    history = [
        json.loads(line) for line in (tmp_path / "prune" / "history.jsonl").open()
    ]
    assert [entry["step"] for entry in history] == list(range(1, 7))
    report = json.loads((tmp_path / "student" / "report.json").read_text())
    assert report["student_params"] > 0
