"""Speaker identification: VoxCeleb1 preparation and the recipe (command line)."""

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from recipe_runner import recipe_args, run_recipe

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "VoxCeleb1" / "SID"
sys.path.insert(0, str(RECIPE))

from voxceleb1_prepare import prepare_voxceleb1_sid  # noqa: E402


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_voxceleb1_identification_split(tmp_path):
    root = tmp_path / "VoxCeleb1"
    lines = []
    for speaker in ("id10001", "id10002"):
        for index, code in enumerate("123"):
            relative = f"{speaker}/vid-{index}/0000{index}.wav"
            path = root / "wav" / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(str(path), np.zeros(8000, dtype="float32"), 16000)
            lines.append(f"{code} {relative}")
    lines.append("3 id10002/vid-9/00009.wav")  # listed, but missing on disk
    (root / "iden_split.txt").write_text("\n".join(lines) + "\n")
    save = tmp_path / "save"
    counts = prepare_voxceleb1_sid(root, save)
    assert counts == {"train": 2, "valid": 2, "test": 2}
    test = _rows(save / "test.csv")
    assert [r["spk_id"] for r in test] == ["id10001", "id10002"]
    assert test[0]["ID"] == "id10001--vid-2--00002" and test[0]["duration"] == "0.5000"
    assert prepare_voxceleb1_sid(root, save) == {}  # unchanged: skipped
    # The missing test file appears: the file list changed, so it prepares again.
    late = root / "wav" / "id10002" / "vid-9" / "00009.wav"
    late.parent.mkdir(parents=True)
    sf.write(str(late), np.zeros(8000, dtype="float32"), 16000)
    assert prepare_voxceleb1_sid(root, save) == {"train": 2, "valid": 2, "test": 3}
    (root / "iden_split.txt").write_text("9 nonsense\n")
    with pytest.raises(ValueError, match="unexpected line"):
        prepare_voxceleb1_sid(root, tmp_path / "other")


@pytest.mark.slow
def test_sid_recipe_command_line_and_restored_layer_weights(
    builtin_corpus, tiny_hubert, tmp_path
):
    out = tmp_path / "sid"
    yaml = "recipes/VoxCeleb1/SID/hparams/sid_mean_pool.yaml"
    args = recipe_args(yaml, out, builtin_corpus, upstream_source=tiny_hubert)
    run_recipe(yaml, args)
    results = json.loads((out / "test_results.json").read_text())["results"]["test"]
    assert results["utterances"] == 8  # 4 voices x 2 test-clean sentences
    correct = results["accuracy"] * results["utterances"] / 100
    assert abs(correct - round(correct)) < 1e-3
    speakers = {r["spk_id"] for r in _rows(out / "save" / "train.csv")}
    assert len(speakers) == 4
    first = json.loads((out / "layer_weights.json").read_text())["weights"]
    assert max(first) - min(first) > 1e-4  # trained away from the uniform init
    # Same run again: training is finished, so the best checkpoint is loaded
    # and evaluated; the layer weights must come back from it.
    (out / "layer_weights.json").unlink()
    run_recipe(yaml, args)
    again = json.loads((out / "layer_weights.json").read_text())["weights"]
    assert again == pytest.approx(first, abs=1e-6)


def test_manifest_folder_with_own_speakers(tmp_path):
    """train/valid/test.csv with spk_id labels: the SID preparation takes them."""
    from speechbrain_skill.data.manifests import write_manifest

    folder = tmp_path / "speakers"
    folder.mkdir()
    sf.write(folder / "a.wav", np.zeros(8000, dtype="float32"), 16000)
    (folder / "bad.wav").write_bytes(b"not audio")
    rows = [["u1", "a.wav", "alice"], ["u2", "a.wav", "bob"], ["u3", "bad.wav", "bob"]]
    for split in ("train", "valid", "test"):
        write_manifest(folder / f"{split}.csv", ["ID", "wav", "spk_id"], rows)
    counts = prepare_voxceleb1_sid(folder, tmp_path / "save")
    assert counts == {"train": 2, "valid": 2, "test": 2}  # the bad file left out
    train = _rows(tmp_path / "save" / "train.csv")
    assert [r["spk_id"] for r in train] == ["alice", "bob"]
    assert train[0]["duration"] == "0.5000"


def _run_in(folder, *args):
    """train.py from another working folder: results land under folder/results."""
    return run_recipe(RECIPE / "hparams" / "sid_mean_pool.yaml", args, cwd=folder)


@pytest.fixture(scope="module")
def two_upstreams(builtin_corpus, tiny_hubert, tiny_wavlm, tmp_path_factory):
    """The SID recipe with its default output folder, on two upstreams in turn."""
    folder = tmp_path_factory.mktemp("sid_two_upstreams")
    common = [
        f"--data_folder={builtin_corpus}",
        "--batch_size=4",
        "--eval_batch_size=4",
        "--num_workers=0",
        "--train_max_seconds=2.0",
    ]
    _run_in(folder, *common, f"--upstream_source={tiny_hubert}", "--number_of_epochs=1")
    second = [*common, f"--upstream_source={tiny_wavlm}"]
    _run_in(folder, *second, "--number_of_epochs=2")
    return folder, second


@pytest.mark.slow
def test_changing_only_the_upstream_trains_anew(two_upstreams, tiny_hubert, tiny_wavlm):
    # Issue 12 case 3: the output folder used to depend on the seed only, so
    # the second upstream loaded the first one's trained head and skipped
    # training.
    folder, _ = two_upstreams
    runs = sorted((folder / "results" / "sid_mean_pool").glob("*/1986"))
    assert len(runs) == 2
    sources = {}
    for run in runs:
        results = json.loads((run / "test_results.json").read_text())
        sources[results["upstream"]["source"]] = run
    assert set(sources) == {str(tiny_hubert), str(tiny_wavlm)}
    trained = (sources[str(tiny_wavlm)] / "train_log.txt").read_text()
    assert "epoch: 1" in trained and "epoch: 2" in trained


@pytest.mark.slow
def test_damaged_newest_checkpoint_falls_back_to_the_older(two_upstreams):
    # Issue 12 case 4: a truncated newest checkpoint crashed every rerun with
    # an error naming no file, although an older complete one existed.
    folder, args = two_upstreams
    (run,) = (folder / "results" / "sid_mean_pool").glob("tiny_wavlm*/1986")
    checkpoints = sorted((run / "save").glob("CKPT+*"))
    assert len(checkpoints) == 2  # the two newest are kept
    damaged = checkpoints[-1] / "head.ckpt"
    damaged.write_bytes(damaged.read_bytes()[:64])
    _run_in(folder, *args, "--number_of_epochs=3")
    # The damaged file is named (paths relative to the working folder).
    assert f"skipped: {damaged.relative_to(folder)}" in (run / "log.txt").read_text()
    assert not checkpoints[-1].exists()  # set aside in save/unusable/
    epochs = (run / "train_log.txt").read_text().count("epoch: 2")
    assert epochs == 2  # epoch 2 trained again from the epoch-1 checkpoint
    assert "epoch: 3" in (run / "train_log.txt").read_text()
