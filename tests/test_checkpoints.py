"""Checkpoint recovery falls back past damaged files; a full disk is a clear error."""

import errno
import logging

import pytest
import torch
from speechbrain.utils.checkpoints import DEFAULT_SAVE_HOOKS

from speechbrain_skill.training.checkpoints import (
    COMPLETE_MARKER,
    UNUSABLE_FOLDER,
    CompleteCheckpointer,
)
from speechbrain_skill.training.disk_space import DiskFullError


def _checkpointer(folder, layer):
    optimizer = torch.optim.Adam(layer.parameters(), lr=0.1)
    return CompleteCheckpointer(
        folder, recoverables={"layer": layer, "optimizer": optimizer}
    )


def _set(layer, value):
    with torch.no_grad():
        for param in layer.parameters():
            param.fill_(value)


def _two_checkpoints(folder):
    layer = torch.nn.Linear(4, 4)
    ckpt = _checkpointer(folder, layer)
    for step in (1, 2):
        _set(layer, float(step))
        ckpt.save_and_keep_only(meta={"step": step}, num_to_keep=1)
    return layer, ckpt


def test_two_newest_checkpoints_are_kept(tmp_path):
    # SpeechBrain's num_to_keep=1 alone would leave one: nothing to fall back to.
    _, ckpt = _two_checkpoints(tmp_path)
    assert sorted(c.meta["step"] for c in ckpt.list_checkpoints()) == [1, 2]
    # The best-loss rule still keeps its checkpoint besides the two newest.
    layer = torch.nn.Linear(2, 2)
    best = _checkpointer(tmp_path / "best", layer)
    for step, loss in enumerate([0.1, 0.5, 0.4, 0.3]):
        best.save_and_keep_only(meta={"step": step, "loss": loss}, min_keys=["loss"])
    assert sorted(c.meta["step"] for c in best.list_checkpoints()) == [0, 2, 3]


def test_truncated_newest_checkpoint_falls_back_to_the_older(tmp_path, caplog):
    _, ckpt = _two_checkpoints(tmp_path)
    newest = ckpt.find_checkpoint()
    assert newest.meta["step"] == 2
    damaged = newest.paramfiles["layer"]
    damaged.write_bytes(damaged.read_bytes()[:100])  # a truncated copy

    layer = torch.nn.Linear(4, 4)
    fresh = _checkpointer(tmp_path, layer)
    with caplog.at_level(logging.WARNING):
        loaded = fresh.recover_if_possible()
    assert loaded.meta["step"] == 1
    assert torch.all(layer.weight == 1.0)  # the older checkpoint's weights
    assert str(damaged) in caplog.text  # the skipped file is named
    # The damaged checkpoint is set aside: the next recovery goes straight to
    # the good one, and it never counts among the "newest" to keep.
    assert (tmp_path / UNUSABLE_FOLDER / newest.path.name / damaged.name).is_file()
    assert [c.meta["step"] for c in fresh.list_checkpoints()] == [1]


def test_no_loadable_checkpoint_names_every_damaged_file(tmp_path):
    _, ckpt = _two_checkpoints(tmp_path)
    files = [c.paramfiles["optimizer"] for c in ckpt.list_checkpoints()]
    for path in files:
        path.write_bytes(b"")
    with pytest.raises(RuntimeError, match="No checkpoint .* can be loaded") as info:
        _checkpointer(tmp_path, torch.nn.Linear(4, 4)).recover_if_possible()
    for path in files:
        assert str(path) in str(info.value)


def test_a_full_disk_names_the_folder_and_keeps_the_last_checkpoint(
    tmp_path, monkeypatch
):
    layer, ckpt = _two_checkpoints(tmp_path)

    def no_space(obj, path):
        path.write_bytes(b"PK")  # a partial file, as a real full disk leaves
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setitem(DEFAULT_SAVE_HOOKS, torch.nn.Module, no_space)
    _set(layer, 3.0)
    with pytest.raises(DiskFullError) as info:
        ckpt.save_and_keep_only(meta={"step": 3}, num_to_keep=1)
    message = str(info.value)
    assert str(tmp_path) in message and "needs about" in message
    assert info.value.errno == errno.ENOSPC
    assert isinstance(info.value.__cause__, OSError)
    # Nothing half-written is left, nothing older was deleted: a rerun resumes
    # from step 2.
    monkeypatch.undo()
    dirs = [p for p in tmp_path.iterdir() if p.name.startswith("CKPT")]
    assert all((p / COMPLETE_MARKER).is_file() for p in dirs) and len(dirs) == 2
    fresh_layer = torch.nn.Linear(4, 4)
    loaded = _checkpointer(tmp_path, fresh_layer).recover_if_possible()
    assert loaded.meta["step"] == 2 and torch.all(fresh_layer.weight == 2.0)


def test_too_little_free_space_stops_before_writing(tmp_path, monkeypatch):
    layer, ckpt = _two_checkpoints(tmp_path)
    needed = ckpt.estimated_size()
    # The checkpoint holds 20 float32 parameters and Adam's two moments.
    assert needed >= 3 * 20 * 4
    monkeypatch.setattr(
        "speechbrain_skill.training.disk_space.free_bytes", lambda folder: 10
    )
    with pytest.raises(DiskFullError, match="10 B are free"):
        ckpt.save_and_keep_only(meta={"step": 3})
    assert len(list(tmp_path.glob("CKPT*"))) == 2
