"""benchmarks/gpu_check.py runs on CPU at tiny sizes (what a lent GPU will run)."""

import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCH))

import gpu_check  # noqa: E402


def test_cpu_tiny_throughput_and_prune_sections(tmp_path):
    summary = gpu_check.main(
        [
            "--device=cpu",
            "--tiny",
            f"--output={tmp_path}",
            "--sections",
            "env",
            "throughput",
            "prune",
        ]
    )
    saved = json.loads((tmp_path / "gpu_check.json").read_text())
    assert saved["env"]["torch"] == summary["env"]["torch"]
    # fp16 needs CUDA: on CPU fp32 and bf16 throughput, a bf16 prune run.
    assert [row["precision"] for row in saved["throughput"]] == ["fp32", "bf16"]
    for row in saved["throughput"]:
        assert "error" not in row, row.get("error")
        # 2 x 1 s of audio per step: audio/s is the batch over the median step.
        assert row["ours_audio_s_per_s"] == pytest.approx(
            2.0 / row["ours_median_step_s"], rel=1e-2
        )
        assert "reference_audio_s_per_s" not in row  # no checkout given
    (prune,) = saved["prune"]
    assert prune["precision"] == "bf16" and "error" not in prune
    assert prune["settings"]["steps"] == 6 and prune["settings"]["precision"] == "bf16"
    history = json.loads((tmp_path / "prune_bf16.json").read_text())["prune_history"]
    assert [h["step"] for h in history] == list(range(1, 7))
    # The target ramps up over the first 10 % of the steps, then stays.
    assert history[-1]["target"] == pytest.approx(0.75)
    assert prune["final_student_params_ours"] > 0


@pytest.mark.slow
def test_cpu_tiny_recipe_and_quickstart_sections(tmp_path):
    saved = gpu_check.main(
        [
            "--device=cpu",
            "--tiny",
            f"--output={tmp_path}",
            "--rows=skill_wavlm",
            "--sections",
            "recipes",
            "quickstart",
        ]
    )
    runs = saved["recipes"]
    assert [run["precision"] for run in runs] == ["fp32", "bf16"]
    for run in runs:
        assert run["passed"], run.get("log_tail")
        assert run["layer_groups_stage_s"] >= 0
    assert saved["quickstart"]["passed"], saved["quickstart"].get("log_tail")
    assert saved["quickstart"]["report"]
