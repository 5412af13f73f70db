"""Two-process DDP (gloo, CPU) run of the SKILL recipe on the built-in corpus."""

import csv
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import soundfile as sf
from recipe_runner import RECIPE, tiny_overrides

BAD_IDS = {"NaN or Inf samples": ["nan-0", "nan-1", "nan-2"], "missing": ["gone-0"]}


def _bad_data(builtin_corpus, manifests, folder):
    """A corpus with one corrupt file, and a train csv with four bad rows."""
    corpus = folder / "corpus"
    shutil.copytree(builtin_corpus, corpus)
    chapter = sorted((corpus / "train-clean-100").glob("*/*"))[0]
    utt = f"{chapter.parent.name}-{chapter.name}-9999"
    (chapter / f"{utt}.flac").write_bytes(b"not audio")  # excluded by preparation
    trans = next(chapter.glob("*.trans.txt"))
    trans.write_text(trans.read_text() + f"{utt} A BROKEN FILE\n")
    train_csv = folder / "train.csv"
    shutil.copy(manifests / "train-clean-100.csv", train_csv)
    data = np.zeros(16000, dtype="float32")
    data[10] = np.nan
    with open(train_csv, "a", newline="") as handle:
        writer = csv.writer(handle)
        for utt_id in BAD_IDS["NaN or Inf samples"]:
            wav = folder / f"{utt_id}.wav"
            sf.write(str(wav), data, 16000, subtype="FLOAT")
            writer.writerow([utt_id, 1.0, str(wav), "1", "X"])
        writer.writerow(["gone-0", 1.0, str(folder / "gone.flac"), "1", "X"])
    return corpus, train_csv


def test_torchrun_two_processes_gloo(builtin_corpus, manifests, tiny_wavlm, tmp_path):
    corpus, train_csv = _bad_data(builtin_corpus, manifests, tmp_path)
    output = tmp_path / "run"
    args = tiny_overrides(
        corpus,
        output,
        tiny_wavlm,
        prune_steps=12,  # over two epochs on each process: bad files met again
        final_steps=3,
        train_csv=train_csv,
        calibration_utterances=20,  # the whole train csv, bad rows included
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
    history = [json.loads(line) for line in (output / "prune" / "history.jsonl").open()]
    assert [entry["step"] for entry in history] == list(range(1, 13))
    report = json.loads((output / "student" / "report.json").read_text())
    assert report["student_params"] > 0
    # Issue 12 case 6: every bad file once, whichever process met it and however
    # often (the report used to count rank 0's hits only), plus the files the
    # preparation and the calibration left out.
    assert report["skipped_file_ids"] == BAD_IDS
    assert report["skipped_files"] == {"NaN or Inf samples": 3, "missing": 1}
    assert report["skipped_in_calibration"] == {"NaN or Inf samples": 3, "missing": 1}
    assert report["excluded_in_preparation"] == {"unreadable": 1}
