"""The layer-analysis command line and run_layer_analysis, on generated audio."""

import csv
import json
import os
import subprocess
import sys

import matplotlib.image
import numpy as np
import pytest
import soundfile as sf

from speechbrain_skill.layer_groups.analysis import OUTPUT_FILES
from speechbrain_skill.layer_groups.cli import main
from speechbrain_skill.layer_groups.groups_file import load_groups

SAMPLE_RATE = 16000


@pytest.fixture(scope="module")
def signal_manifest(tmp_path_factory):
    """Six short sine/noise flac files (one of them corrupt) and their csv."""
    folder = tmp_path_factory.mktemp("signals")
    rng = np.random.default_rng(0)
    rows = []
    for index in range(6):
        seconds = 0.6 + 0.2 * index
        t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
        audio = 0.3 * np.sin(2 * np.pi * (150 + 60 * index) * t)
        audio = audio + 0.05 * rng.standard_normal(t.size)
        path = folder / f"utt{index}.flac"
        sf.write(path, audio.astype(np.float32), SAMPLE_RATE)
        rows.append([f"utt{index}", seconds, str(path), "spk", "SOUND"])
    (folder / "utt5.flac").write_bytes(b"not audio at all")
    manifest = folder / "signals.csv"
    with open(manifest, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["ID", "duration", "wav", "spk_id", "wrd"])
        writer.writerows(rows)
    return str(manifest)


def check_outputs(folder, num_states, k):
    for name in OUTPUT_FILES.values():
        assert (folder / name).is_file(), name
    matrix = np.load(folder / "similarity.npy")
    assert matrix.shape == (num_states, num_states)
    table = np.loadtxt(folder / "similarity.csv", delimiter=",", skiprows=1)
    np.testing.assert_array_equal(table[:, 0], np.arange(num_states))
    np.testing.assert_allclose(table[:, 1:], matrix, rtol=1e-15)
    groups = load_groups(folder / "groups.json", num_states=num_states)
    assert len(groups) == k
    assert sorted(sum(groups, [])) == list(range(num_states))
    for name in ("similarity_heatmap.png", "dendrogram.png"):
        image = matplotlib.image.imread(folder / name)
        assert image.shape[0] > 300 and image[..., :3].std() > 0.05
    return json.loads((folder / "groups.json").read_text())


def test_cli_writes_everything_and_counts_bad_files(
    signal_manifest, tiny_wavlm, tmp_path, capsys
):
    output = tmp_path / "analysis"
    status = main(
        [
            "--teacher", tiny_wavlm, "--manifest", signal_manifest,
            "--output", str(output), "--k", "2", "--batch_size", "2",
            "--num_utterances", "6", "--no_progress", "--float32_products",
        ]
    )  # fmt: skip
    stdout = capsys.readouterr().out
    assert status == 0
    content = check_outputs(output, num_states=5, k=2)
    meta = content["metadata"]
    assert meta["num_utterances"] == 5 and meta["num_skipped"] == 1
    assert meta["teacher"] == os.path.basename(tiny_wavlm)
    assert meta["manifest"] == os.path.abspath(signal_manifest)
    assert meta["product_dtype"] == "torch.float32"
    assert "G1: layers" in stdout and "G2: layers" in stdout
    assert "5 utterances" in stdout and "Skipped 1" in stdout


def test_cli_is_deterministic_and_subsamples(signal_manifest, tiny_wavlm, tmp_path):
    matrices = []
    for run in range(2):
        output = tmp_path / str(run)
        assert main(
            [
                "--teacher", tiny_wavlm, "--manifest", signal_manifest,
                "--output", str(output), "--k", "3", "--measure", "cka_minibatch",
                "--minibatch_size", "32", "--max_frames_per_utterance", "20",
                "--linkage", "complete", "--num_utterances", "4", "--no_progress",
            ]
        ) == 0  # fmt: skip
        matrices.append(np.load(output / "similarity.npy"))
        meta = json.loads((output / "groups.json").read_text())
        assert meta["linkage"] == "complete" and meta["k"] == 3
        assert meta["metadata"]["num_frames_used"] <= 4 * 20
    np.testing.assert_array_equal(matrices[0], matrices[1])


def test_cli_errors_are_clear(signal_manifest, tiny_wavlm, tmp_path, capsys):
    base = ["--output", str(tmp_path / "out"), "--no_progress"]
    cases = [
        (["--teacher", tiny_wavlm, "--manifest", "missing.csv"], "Manifest not found"),
        (["--teacher", tiny_wavlm, "--manifest", signal_manifest, "--k", "6"], "K"),
        (
            ["--teacher", str(tmp_path / "nope"), "--manifest", signal_manifest],
            "Could not load teacher",
        ),
        (
            ["--teacher", tiny_wavlm, "--manifest", signal_manifest,
             "--minibatch_size", "8"],
            "cka_minibatch",
        ),
        (
            ["--teacher", tiny_wavlm, "--manifest", signal_manifest,
             "--measure", "cosine", "--float32_products"],
            "only applies to --measure cka",
        ),
    ]  # fmt: skip
    for arguments, message in cases:
        assert main(arguments + base) == 1
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--teacher", tiny_wavlm, "--manifest", signal_manifest, "--linkage", "x"])


def test_module_entry_point(signal_manifest, tiny_wavlm, tmp_path):
    output = tmp_path / "entry"
    process = subprocess.run(
        [
            sys.executable, "-m", "speechbrain_skill.layer_groups",
            "--teacher", tiny_wavlm, "--manifest", signal_manifest,
            "--output", str(output), "--k", "2", "--measure", "cosine",
        ],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert process.returncode == 0, process.stderr
    assert "G1: layers" in process.stdout
    assert "Layer similarity" in process.stderr  # the progress bar
    check_outputs(output, num_states=5, k=2)


def test_builtin_corpus_end_to_end(manifests, tiny_wavlm, tmp_path, capsys):
    output = tmp_path / "builtin"
    manifest = str(manifests / "train-clean-100.csv")
    status = main(
        [
            "--teacher", tiny_wavlm, "--manifest", manifest,
            "--output", str(output), "--num_utterances", "8", "--no_progress",
        ]
    )  # fmt: skip
    assert status == 0
    content = check_outputs(output, num_states=5, k=4)
    assert content["metadata"]["num_utterances"] == 8
    assert "G4: layers" in capsys.readouterr().out


def test_data_folder_in_librispeech_layout(
    builtin_corpus, tiny_wavlm, tmp_path, capsys
):
    """A LibriSpeech-layout folder works directly; the size used is stated."""
    split = builtin_corpus / "dev-clean"
    files = sorted(split.glob("*/*/*.flac"))
    output = tmp_path / "folder"
    status = main(
        [
            "--teacher", tiny_wavlm, "--data_folder", str(split),
            "--output", str(output), "--num_utterances", "1000", "--no_progress",
        ]
    )  # fmt: skip
    assert status == 0
    out = capsys.readouterr().out
    assert f"Calibration set: {len(files)} of {len(files)} utterances in {split}" in out
    assert "--num_utterances 1000 asked for more than there are" in out
    content = check_outputs(output, num_states=5, k=4)
    assert content["metadata"]["num_utterances"] == len(files)
    with open(output / "calibration_manifest.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(row["wav"] for row in rows) == sorted(str(f) for f in files)
    assert {row["spk_id"] for row in rows} == {f.parent.parent.name for f in files}


def test_recipe_stage_passes_the_minibatch_size(signal_manifest, tiny_wavlm, tmp_path):
    # The recipe's similarity_minibatch_size reaches the measure: the stage gives
    # the CLI's matrix for the same size and another matrix for the default size.
    from speechbrain_skill.distillation.stages import find_layer_groups
    from speechbrain_skill.lobes.teacher import FrozenSSLTeacher

    common = {"--num_utterances": "5", "--batch_size": "2", "--seed": "3"}
    cli_args = ["--teacher", tiny_wavlm, "--manifest", signal_manifest, "--k", "2"]
    cli_args += ["--measure", "cka_minibatch", "--minibatch_size", "8"]
    cli_args += [item for pair in common.items() for item in pair]
    assert main(cli_args + ["--output", str(tmp_path / "cli"), "--no_progress"]) == 0

    matrices = {}
    for size in (8, None):
        folder = tmp_path / f"stage_{size}"
        find_layer_groups(
            FrozenSSLTeacher(tiny_wavlm, hidden_state_zero="projection"),
            folder,
            signal_manifest,
            num_groups=2,
            linkage="average",
            measure="cka_minibatch",
            utterances=5,
            batch_size=2,
            max_seconds=None,
            max_frames_per_utterance=None,
            seed=3,
            progress=False,
            minibatch_size=size,
        )
        matrices[size] = np.load(folder / "similarity.npy")
    np.testing.assert_array_equal(matrices[8], np.load(tmp_path / "cli/similarity.npy"))
    assert np.abs(matrices[8] - matrices[None]).max() > 1e-6
