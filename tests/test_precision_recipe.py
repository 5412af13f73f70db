"""Acceptance of issue 26: the distillation recipe under bf16 autocast on CPU.

The recipe's DPHuBERT debug run (fixed layer groups: no clustering that
could choose other groups) runs twice, ``--precision=fp32`` and
``--precision=bf16`` (SpeechBrain's CPU autocast), from the same seed. Every
logged loss of the distill+prune and final stages matches fp32 within the
bf16 tolerance of ``test_gpu_readiness`` (2 unit roundoffs at the first
step, 4 at every step; bf16's unit roundoff is 2^-8). That the targets are
never cast down is tested in ``test_gpu_readiness`` (the run's Brain, both
emulated CUDA and CPU autocast).
"""

import json

import pytest
from recipe_runner import recipe_args, run_recipe

pytestmark = pytest.mark.slow

BF16_UNIT_ROUNDOFF = 2.0**-8


def logged_losses(output, stage):
    path = output / stage / "history.jsonl"
    return [json.loads(line)["loss"] for line in path.open()]


def test_bf16_recipe_run_has_the_fp32_losses(builtin_corpus, tiny_wavlm, tmp_path):
    runs = {}
    for precision in ("fp32", "bf16"):
        output = tmp_path / precision
        args = recipe_args(
            "dphubert_wavlm.yaml",
            output,
            builtin_corpus,
            teacher_source=tiny_wavlm,
            prune_steps=4,
            sparsity_warmup_steps=2,
            final_steps=2,
            precision=precision,
        )
        log = run_recipe("dphubert_wavlm.yaml", args)
        assert f"--precision={precision}" in log
        runs[precision] = {
            stage: logged_losses(output, stage) for stage in ("prune", "final")
        }
    for stage in ("prune", "final"):
        reference, losses = runs["fp32"][stage], runs["bf16"][stage]
        assert len(losses) == len(reference) > 0
        errors = [abs(a - b) / max(1.0, abs(b)) for a, b in zip(losses, reference)]
        print(stage, "relative loss differences bf16 vs fp32:", errors)
        assert errors[0] <= 2 * BF16_UNIT_ROUNDOFF, (stage, errors)
        assert max(errors) <= 4 * BF16_UNIT_ROUNDOFF, (stage, errors)
        assert losses != reference, stage  # bf16 did run
