"""Two-process DDP (gloo, CPU) run of the SKILL recipe on the built-in corpus."""

import csv
import json
import re
import shutil

import numpy as np
import pytest
import soundfile as sf
from recipe_runner import recipe_args, run_recipe

REPORT = re.compile(
    r"\[rank: (\d)\] training ended at optimizer step (\d+); (\d+) utterances"
)
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


@pytest.mark.slow
def test_torchrun_two_processes_gloo(builtin_corpus, manifests, tiny_wavlm, tmp_path):
    corpus, train_csv = _bad_data(builtin_corpus, manifests, tmp_path)
    output = tmp_path / "run"
    args = recipe_args(
        "skill_wavlm.yaml",
        output,
        corpus,
        teacher_source=tiny_wavlm,
        prune_steps=12,  # over two epochs on each process: bad files met again
        final_steps=3,
        train_csv=train_csv,
        calibration_utterances=20,  # the whole train csv, bad rows included
    )
    launcher = [
        "--nproc_per_node=2",
        "--master_port=29533",
        f"--log-dir={tmp_path / 'ranks'}",
        "--redirects=3",
    ]
    run_recipe(
        "skill_wavlm.yaml", [*args, "--distributed_backend=gloo"], launcher=launcher
    )
    logs = {
        rank: "".join(p.read_text() for p in tmp_path.glob(f"ranks/*/*/{rank}/*.log"))
        for rank in (0, 1)
    }
    # Each process trained both stages to their step budgets, on its own share
    # of the utterances; the main process alone wrote the summary.
    for rank, log in logs.items():
        reports = [tuple(map(int, m)) for m in REPORT.findall(log)]
        assert [(r, step) for r, step, _ in reports] == [(rank, 12), (rank, 3)], log
        assert all(utterances > 0 for *_, utterances in reports)
    assert logs[0].count("distillation summary") == 1
    assert "distillation summary" not in logs[1]
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
