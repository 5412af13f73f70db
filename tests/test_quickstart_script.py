"""scripts/quickstart.sh: the user's options replace the script's own settings."""

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import speechbrain as sb
from hyperpyyaml import load_hyperpyyaml

REPO = Path(__file__).resolve().parent.parent
RECIPE = REPO / "recipes" / "LibriSpeech" / "distillation"


def _run_with_recording_python(tmp_path, *args, **env):
    """Run the script with PY = a stub that records each call's arguments."""
    calls = tmp_path / "calls.jsonl"
    stub = tmp_path / "python"
    stub.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        f"with open({str(calls)!r}, 'a') as f:\n"
        "    f.write(json.dumps({'argv': sys.argv[1:], 'cwd': os.getcwd(),\n"
        "        'threads': os.environ.get('OMP_NUM_THREADS')}) + '\\n')\n"
    )
    stub.chmod(stub.stat().st_mode | stat.S_IEXEC)
    environment = dict(os.environ, PY=str(stub), **env)
    environment.pop("OMP_NUM_THREADS", None)
    subprocess.run(
        ["bash", str(REPO / "scripts" / "quickstart.sh"), *args],
        check=True,
        env=environment,
        capture_output=True,
        text=True,
    )
    return [json.loads(line) for line in calls.read_text().splitlines()]


def _keys(argv):
    return [arg[2:].split("=", 1)[0] for arg in argv if arg.startswith("--")]


def test_user_options_replace_the_scripts_own(tmp_path, monkeypatch):
    out = tmp_path / "run"
    calls = _run_with_recording_python(
        tmp_path,
        str(out),
        "--num_groups=3",
        "--prune_steps",
        "7",
        "--noprogressbar",
        "--target_sparsity=0.5",
        THREADS="1",
    )
    check_call, corpus_call, train_call = calls
    # The command line is checked first, with the same arguments as train.py.
    assert check_call["argv"][:2] == ["-m", "speechbrain_skill.training.command_line"]
    assert check_call["argv"][2:] == train_call["argv"][1:]
    assert corpus_call["argv"][:2] == ["-m", "speechbrain_skill.data.synthetic_corpus"]
    argv = train_call["argv"]
    assert argv[0] == "train.py" and train_call["cwd"] == str(RECIPE)
    keys = _keys(argv[2:])
    assert len(keys) == len(set(keys)), keys
    assert "--num_groups=3" in argv and "--prune_steps=7" in argv
    assert "--noprogressbar" in argv and "--target_sparsity=0.5" in argv
    assert f"--output_folder={out}" in argv
    assert train_call["threads"] == "1"
    # SpeechBrain parses the command line and HyperPyYAML loads it: no duplicate key.
    monkeypatch.chdir(RECIPE)
    hparams_file, run_opts, overrides = sb.parse_arguments(argv[1:])
    with open(hparams_file, encoding="utf-8") as fin:
        hparams = load_hyperpyyaml(fin, overrides)
    assert hparams["num_groups"] == 3 and hparams["prune_steps"] == 7
    assert hparams["target_sparsity"] == 0.5 and run_opts["noprogressbar"]


def test_another_data_folder_builds_no_corpus(tmp_path):
    calls = _run_with_recording_python(tmp_path, f"--data_folder={tmp_path}")
    check_call, train_call = calls
    assert check_call["argv"][1] == "speechbrain_skill.training.command_line"
    assert f"--data_folder={tmp_path}" in train_call["argv"]
    default_out = REPO / "results" / "quickstart"
    assert f"--output_folder={default_out}" in train_call["argv"]
    assert int(train_call["threads"]) >= 1
