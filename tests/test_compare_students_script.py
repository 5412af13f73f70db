"""scripts/compare_students.sh: each method's targets come from the teacher's preset."""

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from hyperpyyaml import load_hyperpyyaml

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "compare_students.sh"


def _run(tmp_path, teacher):
    """Run the script with PY = a stub: it records every call and trains nothing.

    Only a program on standard input (the script's preset lookup) is run, by
    the real interpreter.
    """
    calls = tmp_path / "calls.jsonl"
    stub = tmp_path / "python"
    stub.write_text(
        f"#!{sys.executable}\n"
        "import json, os, subprocess, sys\n"
        f"with open({str(calls)!r}, 'a') as f:\n"
        "    f.write(json.dumps({'argv': sys.argv[1:], 'cwd': os.getcwd()}) + '\\n')\n"
        "if sys.argv[1:2] == ['-']:\n"
        f"    real = subprocess.run([{sys.executable!r}, *sys.argv[1:]])\n"
        "    sys.exit(real.returncode)\n"
    )
    stub.chmod(stub.stat().st_mode | stat.S_IEXEC)
    result = subprocess.run(
        ["bash", str(SCRIPT), str(tmp_path / "out")],
        env=dict(os.environ, PY=str(stub), TEACHER=teacher),
        capture_output=True,
        text=True,
    )
    recorded = [json.loads(line) for line in calls.read_text().splitlines()]
    return result, recorded


def _flag(argv, name):
    return next(a.split("=", 1)[1] for a in argv if a.startswith(f"--{name}="))


@pytest.mark.parametrize("preset", ["tiny_wavlm.yaml", "whisper_wavlm.yaml"])
def test_methods_distil_the_presets_targets(tmp_path, preset):
    values = load_hyperpyyaml((REPO / "hparams" / "teachers" / preset).read_text())
    result, calls = _run(tmp_path, values["source"])
    assert result.returncode == 0, result.stderr
    trainings = [c["argv"] for c in calls if c["argv"][:1] == ["train.py"]]
    skill, dphubert, distilhubert = trainings
    assert "--groups=" not in " ".join(skill)  # SKILL clusters its own groups
    assert json.loads(_flag(dphubert, "groups")) == values["dphubert_groups"]
    assert json.loads(_flag(distilhubert, "groups")) == [
        [layer] for layer in values["distilhubert_layers"]
    ]
    for training in trainings:
        assert _flag(training, "teacher_source") == values["source"]
    compare = calls[-1]["argv"]
    assert compare[:2] == ["-m", "speechbrain_skill.downstream.compare"]
    assert f"teacher={values['source']}" in compare


def test_a_teacher_without_a_preset_stops_in_one_line(tmp_path):
    result, calls = _run(tmp_path, "builtin:no-such-teacher")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "compare_students.sh: no preset in "
        f"{REPO / 'hparams' / 'teachers'} has source builtin:no-such-teacher"
    ]
    assert [c["argv"][:1] for c in calls] == [["-"]]  # nothing ran after the lookup
