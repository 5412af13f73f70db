"""Every setting of every distillation yaml reaches a stage fingerprint (issue 22).

The fingerprints are built as the recipe builds them (all resolved settings
of the yaml, minus each stage's declared ignore list, chained through the
stages), without loading a model or training. A setting is changed by
changing its resolved value, leaf by leaf, so the arguments inside ``!new:`` /
``!name:`` objects (an optimizer's weight decay) count like top-level ones.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from recipe_runner import RECIPE, REPO

from speechbrain_skill.distillation.flow import (
    NOT_A_STAGE_SETTING,
    declared_stages,
    run_settings,
)
from speechbrain_skill.training.stage_flow import (
    StageFlow,
    is_ignored,
    resolved_settings,
    top_level_key,
)

YAMLS = sorted((RECIPE / "hparams").glob("*.yaml"))
SOURCES = {"teacher": "t", "train_csv": "a", "valid_csv": "b", "calibration_csv": "c"}
RUN_OPTS = {"precision": "fp32", "grad_accumulation_factor": 1}
# What the layer-groups stage (0.8 h of teacher + CKA at the Base+ shape) may
# depend on: nothing of the training stages, so that changing one does not
# recompute it.
LAYER_GROUP_SETTINGS = {
    "seed",
    "__set_seed",
    "teacher_preset",
    "teacher_source",
    "teacher",
    "hidden_state_zero",
    "groups",
    "num_groups",
    "similarity_measure",
    "similarity_minibatch_size",
    "linkage",
    "calibration_utterances",
    "calibration_batch_size",
    "calibration_max_seconds",
    "max_frames_per_utterance",
    "student_layers",
}


def _settings(yaml):
    overrides = {"data_folder": "/data", "output_folder": "/runs/one"}
    return run_settings(resolved_settings(yaml, overrides), RUN_OPTS)


def _fingerprints(settings):
    clustering = "groups" in settings and settings["groups"] is None
    stages = declared_stages(settings["prune"], clustering)
    return StageFlow(None, settings, SOURCES, []).fingerprints(stages)


def _changed(value):
    """Another value of the same kind."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value * 2 + 1
    if isinstance(value, str):
        return value + "_changed"
    if value is None:
        return 1
    if isinstance(value, list):
        return [*value, 0]
    return {"changed": 1}


@pytest.mark.parametrize("yaml", YAMLS, ids=lambda path: path.stem)
def test_every_setting_changes_a_stage_fingerprint(yaml):
    settings = _settings(yaml)
    before = _fingerprints(settings)
    top_level = {top_level_key(key) for key in settings}
    assert {"prune_opt_class", "final_opt_class", "export_formats"} & top_level
    unseen = []
    for key, value in settings.items():
        if is_ignored(key, NOT_A_STAGE_SETTING):
            continue
        after = _fingerprints({**settings, key: _changed(value)})
        if after == before:
            unseen.append(key)
    assert unseen == []
    # Not vacuous: most settings count, and the ignored ones are named.
    counted = [k for k in settings if not is_ignored(k, tuple(NOT_A_STAGE_SETTING))]
    assert len(counted) > 0.7 * len(settings)


@pytest.mark.parametrize("yaml", YAMLS, ids=lambda path: path.stem)
def test_run_logging_and_paths_change_no_fingerprint(yaml):
    settings = _settings(yaml)
    before = _fingerprints(settings)
    for key in ("log_interval", "ckpt_interval_minutes", "num_workers", "on_stale"):
        assert _fingerprints({**settings, key: _changed(settings[key])}) == before
    # A run copied to another output folder keeps its fingerprints.
    moved = run_settings(
        resolved_settings(yaml, {"data_folder": "/d", "output_folder": "/x/y"}),
        RUN_OPTS,
    )
    assert _fingerprints(moved) == before


@pytest.mark.parametrize("yaml", YAMLS, ids=lambda path: path.stem)
def test_layer_groups_stage_ignores_the_training_settings(yaml):
    settings = _settings(yaml)
    stage = declared_stages(settings["prune"])[0]
    counted = {
        top_level_key(key) for key in settings if not is_ignored(key, stage.ignore)
    }
    assert counted <= LAYER_GROUP_SETTINGS, counted - LAYER_GROUP_SETTINGS


def test_optimizer_argument_recomputes_its_stage_and_the_later_ones():
    settings = _settings(RECIPE / "hparams" / "skill_wavlm.yaml")
    key = "prune_opt_class.weight_decay"
    assert settings[key] == 0.0 and settings["prune_opt_class.!"].endswith("AdamW")
    before = _fingerprints(settings)
    after = _fingerprints({**settings, key: 0.01})
    changed = [name for name in before if before[name] != after[name]]
    assert changed == ["prune", "materialise", "final", "export"]
    after = _fingerprints({**settings, "final_opt_class.weight_decay": 0.01})
    assert [name for name in before if before[name] != after[name]] == [
        "final",
        "export",
    ]


@pytest.mark.slow
def test_changed_prune_weight_decay_reruns_prune_and_later_stages(
    builtin_corpus, tmp_path
):
    """The quick start, rerun in its folder after a yaml edit of the weight decay."""
    output = tmp_path / "run"
    options = [
        f"--data_folder={builtin_corpus}",
        "--calibration_utterances=8",
        "--num_groups=3",
        "--prune_steps=6",
        "--sparsity_warmup_steps=3",
        "--final_steps=2",
        "--log_interval=1",
        "--noprogressbar",
    ]
    env = dict(os.environ, PY=sys.executable, THREADS="1")

    def quickstart(yaml=None):
        run_env = dict(env, **({"YAML": yaml} if yaml else {}))
        result = subprocess.run(
            ["bash", str(REPO / "scripts" / "quickstart.sh"), str(output), *options],
            env=run_env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
        return result.stdout + result.stderr

    def records():
        return {
            path.stem: json.loads(path.read_text())
            for path in (output / "stages").glob("*.json")
        }

    quickstart()
    before = records()
    # The edited yaml next to the shipped one (its includes are relative).
    shipped = RECIPE / "hparams" / "skill_wavlm.yaml"
    edited = tmp_path / "hparams" / "skill_wavlm_wd.yaml"
    edited.parent.mkdir()
    text = shipped.read_text()
    old = (
        "prune_opt_class: !name:torch.optim.AdamW\n"
        "    fused: True\n"
        "    lr: !ref <prune_lr>\n"
        "    weight_decay: 0.0\n"
    )
    assert text.count(old) == 1
    text = text.replace(old, old.replace("0.0", "0.01"))
    edited.write_text(text.replace("!include:../../../../", f"!include:{REPO}/"))
    shutil.copystat(shipped, edited)
    log = quickstart(os.path.relpath(edited, RECIPE / "hparams"))
    after = records()
    assert "prune_opt_class.weight_decay: 0.0 -> 0.01" in log
    assert after["layer_groups"] == before["layer_groups"]
    for stage in ("prune", "materialise", "final", "export"):
        assert after[stage]["fingerprint"] != before[stage]["fingerprint"], stage
        assert after[stage]["status"] == "finished", stage
    history = (output / "prune" / "history.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in history] == list(range(1, 7))
    assert Path(output / "student" / "report.json").is_file()
