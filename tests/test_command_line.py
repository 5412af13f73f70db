"""User errors on the command line: one line, no traceback, before anything loads.

Issue 25: a misspelt option (``--target_sparsty``) ended in a 12-line
traceback with HyperPyYAML's list of ~95 keys; a busy output folder and a
missing data folder surfaced as tracebacks around a good message.
"""

import os
import shlex
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest
from recipe_runner import REPO, recipe_rows, run_recipe

from speechbrain_skill.training.checks import ConfigurationError
from speechbrain_skill.training.command_line import (
    UnknownOption,
    check_overrides,
    yaml_keys,
)
from speechbrain_skill.training.run_lock import lock_output_folder

RECIPE_YAMLS = sorted({row["Hparam_file"] for row in recipe_rows()})
# One yaml per train.py (the subprocess tests cost a start of Python each).
ONE_YAML_PER_SCRIPT = sorted(
    {row["Script_file"]: row["Hparam_file"] for row in recipe_rows()}.values()
)


def misspelt(key):
    """``key`` with one letter dropped (target_sparsity -> target_sparsty)."""
    index = max(i for i, char in enumerate(key) if char in "aeiou")
    return key[:index] + key[index + 1 :]


@pytest.mark.parametrize("hparam_file", RECIPE_YAMLS)
def test_every_recipe_yaml_names_the_key_a_typo_meant(hparam_file):
    path = REPO / hparam_file
    keys, placeholders = yaml_keys(path)
    required = {key: "x" for key in placeholders}
    check_overrides(path, {**required, keys[-1]: 1})  # a real key passes
    key = max(keys, key=len)  # a long key has a unique closest match
    with pytest.raises(UnknownOption) as error:
        check_overrides(path, {**required, misspelt(key): 1})
    message = str(error.value)
    assert f"unknown option --{misspelt(key)}; did you mean --{key}" in message
    assert "\n" not in message


def test_a_required_setting_left_open_is_named(tmp_path):
    path = REPO / RECIPE_YAMLS[0]
    with pytest.raises(ConfigurationError, match="--data_folder=... is required"):
        check_overrides(path, {})


def _one_line_error(result, *expected):
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert lines[-1].startswith("error: ") and all(e in lines[-1] for e in expected)
    return lines[-1]


def test_distillation_typo_is_one_line_without_loading_anything(tmp_path):
    start = time.time()
    script = REPO / "recipes/LibriSpeech/distillation/train.py"
    result = subprocess.run(
        [
            sys.executable,
            str(script),
            "hparams/skill_wavlm.yaml",
            f"--data_folder={tmp_path}",
            f"--output_folder={tmp_path / 'out'}",
            "--target_sparsty=0.5",
        ],
        cwd=script.parent,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    elapsed = time.time() - start
    _one_line_error(result, "--target_sparsty", "did you mean --target_sparsity?")
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()  # stopped before the run began
    print(f"typo through train.py: {elapsed:.1f} s, load {os.getloadavg()}")


def test_traceback_on_request(tmp_path):
    script = REPO / "recipes/LibriSpeech/distillation/train.py"
    result = subprocess.run(
        [sys.executable, str(script), "hparams/skill_wavlm.yaml", "--x_typo=1"],
        cwd=script.parent,
        env=dict(os.environ, OMP_NUM_THREADS="1", SKILL_TRACEBACK="1"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0 and "Traceback" in result.stderr
    assert "UnknownOption" in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("hparam_file", ONE_YAML_PER_SCRIPT)
def test_every_recipe_reports_user_errors_in_one_line(hparam_file, tmp_path):
    keys, _ = yaml_keys(REPO / hparam_file)
    key = max(keys, key=len)
    out = tmp_path / "out"
    cases = {
        "typo": ([f"--data_folder={tmp_path}", f"--{misspelt(key)}=1"], key),
        "data": ([f"--data_folder={tmp_path / 'nowhere'}"], "does not exist"),
        "busy": ([f"--data_folder={tmp_path}"], "in use by process"),
    }
    lock_output_folder(out)  # this test process holds the folder
    for name, (args, expected) in cases.items():
        if name != "typo" and "LibriSpeech/distillation/" not in hparam_file:
            # One start of Python per case: the busy-folder and missing-data
            # cases go through the same hook, so one recipe shows them.
            continue
        log = run_recipe(
            hparam_file,
            [f"--output_folder={out}", "--device=cpu", *args],
            expect_failure=True,
        )
        assert "Traceback" not in log, (name, log[-3000:])
        assert "error: " in log and expected in log, (name, log[-3000:])


@pytest.mark.slow
def test_quick_start_typo_is_one_line(tmp_path):
    start = time.time()
    result = subprocess.run(
        ["bash", str(REPO / "scripts/quickstart.sh"), str(tmp_path / "qs")]
        + ["--target_sparsty=0.5"],
        env=dict(os.environ, PY=sys.executable, THREADS="1"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    elapsed = time.time() - start
    line = _one_line_error(result, "did you mean --target_sparsity?")
    assert line.startswith("error: quickstart.sh: unknown option --target_sparsty")
    assert not Path(tmp_path / "qs").exists()
    print(f"typo through the quick start: {elapsed:.1f} s, load {os.getloadavg()}")


@pytest.mark.parametrize("row", recipe_rows(), ids=lambda row: row["id"])
def test_the_recipe_tables_debug_flags_are_all_known(row, tmp_path):
    import speechbrain as sb

    # Any data placeholder ({builtin_corpus}, {analog_<task>}) names a folder.
    flags = row["test_debug_flags"].format_map(defaultdict(lambda: tmp_path))
    hparams_file, _, overrides = sb.parse_arguments(
        [str(REPO / row["Hparam_file"]), *shlex.split(flags)]
    )
    check_overrides(hparams_file, overrides)  # raises on an unknown option
