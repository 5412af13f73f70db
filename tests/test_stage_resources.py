"""What a stage holds and where it runs (issue 26, items 1 and 7).

* A training stage releases its Brain (and with it the optimizer states and
  DDP buckets) when it ends: SpeechBrain registers the Brain and its
  optimizers with the stage's checkpointer, which the recipe keeps.
* The layer-groups stage runs on the rank's device under ``torchrun``
  (``cuda:<LOCAL_RANK>``), not on the CPU when ``--device`` is not given.
"""

import gc
import importlib.util
import os
import sys
import weakref
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from speechbrain.nnet.schedulers import LinearWarmupScheduler

from speechbrain_skill.data.dataio import AudioBatch
from speechbrain_skill.distillation import flow
from speechbrain_skill.distillation.brains import PruningDistillationBrain
from speechbrain_skill.distillation.lagrangian import SparsityLagrangian
from speechbrain_skill.distillation.losses import DistillationLoss
from speechbrain_skill.layer_groups.groups_file import save_groups
from speechbrain_skill.lobes.heads import LayerProjections
from speechbrain_skill.lobes.student import PrunableSSLEncoder
from speechbrain_skill.lobes.teacher import FrozenSSLTeacher
from speechbrain_skill.training.checkpoints import CompleteCheckpointer

RECIPE = Path(__file__).resolve().parent.parent / "recipes/LibriSpeech/distillation"


class TwoStepBrain(PruningDistillationBrain):
    """The real Brain (optimizers, recoverables), trained on two batches."""

    made = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        TwoStepBrain.made.append(weakref.ref(self))

    def fit(self, epoch_counter, **data):
        self.on_fit_start()
        generator = torch.Generator().manual_seed(0)
        for _ in range(2):
            wav = 0.1 * torch.randn(8000, generator=generator)
            self.fit_batch(AudioBatch([{"id": "a", "sig": wav}]))
        self.last_valid_stats = {}

    def sync_skipped(self):
        return {}


def _prune_stage(tiny_hubert, folder):
    student = PrunableSSLEncoder.from_hf(tiny_hubert, prune_heads=True)
    parts = flow.StudentParts(student, LayerProjections([0, 2, 4], 32), {})
    checkpointer = CompleteCheckpointer(folder)
    objects = {
        "opt_class": lambda p: torch.optim.AdamW(p, lr=1e-3),
        "hparams": {
            "distill_loss": DistillationLoss(),
            "gate_opt_class": lambda p: torch.optim.AdamW(p, lr=1e-2),
            "lambda_opt_class": lambda p: torch.optim.AdamW(p, lr=1e-2, maximize=True),
            "lr_annealing": LinearWarmupScheduler(1e-3, 1, 2),
            "log_interval": 10**6,
            "history_path": os.path.join(folder, "history.jsonl"),
        },
        "epoch_counter": None,
        "checkpointer": checkpointer,
        "modules": {
            "teacher": FrozenSSLTeacher(tiny_hubert),
            "lagrangian": SparsityLagrangian(0.5, 2),
        },
    }
    stage = flow.training_stage("prune", TwoStepBrain, objects, {}, {})
    return stage, parts, checkpointer


@pytest.mark.parametrize("released", [True, False])
def test_prune_stage_releases_its_brain_and_optimizers(
    tiny_hubert, tmp_path, monkeypatch, released
):
    if not released:  # the control: without the release the Brain stays alive
        monkeypatch.setattr(flow, "release_brain", lambda *args, **kwargs: None)
    TwoStepBrain.made.clear()
    stage, parts, checkpointer = _prune_stage(tiny_hubert, tmp_path)
    groups = {"groups": [[0], [2], [4]], "student_layers": [0, 2, 4]}
    student, summary = stage.function(groups, parts)
    assert 0.0 < summary["expected_sparsity"] < 1.0
    gc.collect()
    brain = TwoStepBrain.made[0]()
    if released:
        assert brain is None
        assert sorted(checkpointer.recoverables) == ["heads", "student"]
        # The trained student is what the stage hands on.
        assert student is parts
    else:
        assert brain is not None and "optimizer" in checkpointer.recoverables


# ------------------------------------------------------------------ item 1
def _recipe():
    """The distillation recipe's train.py as a module (its stages)."""
    spec = importlib.util.spec_from_file_location("distill_train", RECIPE / "train.py")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(RECIPE))
    spec.loader.exec_module(module)
    return module


def _rank(rank, folder, results):
    os.environ.update(LOCAL_RANK=str(rank), RANK=str(rank), WORLD_SIZE="2")
    dist.init_process_group(
        "gloo", init_method=f"file://{folder}/init", rank=rank, world_size=2
    )
    try:
        # An accelerator as torchrun's ranks see one (this machine may have none).
        torch.accelerator.is_available = lambda: True
        torch.accelerator.current_accelerator = lambda: torch.device("cuda")
        recipe = _recipe()

        def find_layer_groups(folder, device, **kwargs):
            results[f"ran on rank {rank}"] = device
            save_groups(Path(folder) / "groups.json", [[0, 1], [2, 3, 4]])

        recipe.stages.find_layer_groups = find_layer_groups
        hparams = {
            "teacher": SimpleNamespace(num_hidden_states=5),
            "groups": None,
            "layer_analysis_folder": folder,
            "student_layers": None,
            "teacher_source": "tiny",
            **dict.fromkeys(
                [
                    "calibration_csv",
                    "num_groups",
                    "linkage",
                    "similarity_measure",
                    "similarity_minibatch_size",
                    "calibration_utterances",
                    "calibration_batch_size",
                    "calibration_max_seconds",
                    "max_frames_per_utterance",
                    "seed",
                ]
            ),
        }
        run_opts = {"device": None, "noprogressbar": True}
        stage = recipe.layer_groups_stage(hparams, run_opts)
        groups, _ = stage.function()
        results[rank] = groups["groups"]
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # two processes that import the recipe: ~30 s on a busy machine
def test_layer_groups_stage_runs_on_the_ranks_device_under_ddp(tmp_path):
    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(_rank, args=(str(tmp_path), results), nprocs=2, join=True)
        results = dict(results)
    # Rank 0 computes the groups on its own GPU (not the CPU, not GPU 0 for
    # all); every rank then has them.
    assert results == {
        "ran on rank 0": "cuda:0",
        0: [[0, 1], [2, 3, 4]],
        1: [[0, 1], [2, 3, 4]],
    }


def test_stage_device_follows_local_rank_and_the_option(monkeypatch):
    monkeypatch.setattr(torch.accelerator, "is_available", lambda: True)
    monkeypatch.setattr(
        torch.accelerator, "current_accelerator", lambda: torch.device("cuda")
    )
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert flow.stage_device({"device": None}) == "cuda:3"
    assert flow.stage_device({"device": "cpu"}) == "cpu"
