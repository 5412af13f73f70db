"""Downstream fine-tuning: the SSL model trains only when unfrozen, its CNN stays
fixed when asked, it has its own optimizer and learning rate, and it runs under DDP."""

import numpy as np
import pytest
import soundfile as sf
import torch
from recipe_runner import recipe_args, run_recipe

from speechbrain_skill.data.manifests import write_manifest
from speechbrain_skill.lobes.student import PrunableSSLEncoder, save_student
from speechbrain_skill.lobes.upstream import SSLUpstream

YAML = "recipes/SpeechCommands/KWS/hparams/kws_mean_pool.yaml"


@pytest.fixture(scope="module")
def tones(tmp_path_factory):
    """Three classes of tones as train/valid/test manifests."""
    folder = tmp_path_factory.mktemp("tones")
    rng = np.random.default_rng(0)
    for split, count in {"train": 4, "valid": 1, "test": 1}.items():
        rows = []
        for label, freq in (("low", 200), ("mid", 600), ("high", 1800)):
            for take in range(count):
                t = np.arange(8000) / 16000
                audio = 0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(
                    t.size
                )
                name = f"{split}_{label}_{take}.wav"
                sf.write(folder / name, audio.astype(np.float32), 16000)
                rows.append([f"{split}-{label}-{take}", name, label])
        write_manifest(folder / f"{split}.csv", ["ID", "wav", "label"], rows)
    return folder


def _run(tones, source, out, *extra):
    args = recipe_args(YAML, out, tones, upstream_source=source, upstream_lr=0.01)
    run_recipe(YAML, [*args, *extra])
    checkpoints = sorted((out / "save").glob("CKPT+*"))
    assert len(checkpoints) >= 1
    return checkpoints[-1]


def _changed(before, after_file):
    after = torch.load(after_file, map_location="cpu")
    assert set(after) == set(before)
    return {name for name in before if not torch.equal(before[name], after[name])}


@pytest.mark.parametrize("source_kind", ["hf", "student"])
def test_one_step_moves_only_what_is_unfrozen(source_kind, tiny_wavlm, tmp_path):
    source = tiny_wavlm
    if source_kind == "student":
        source = tmp_path / "student"
        save_student(PrunableSSLEncoder.from_hf(tiny_wavlm, prune_heads=True), source)
    wavs = torch.randn(2, 16000, generator=torch.Generator().manual_seed(0))
    changed = {}
    for freeze, freeze_cnn in ((True, False), (False, True), (False, False)):
        upstream = SSLUpstream(source, freeze=freeze, freeze_cnn=freeze_cnn)
        before = {k: v.clone() for k, v in upstream.model.state_dict().items()}
        trainable = [p for p in upstream.parameters() if p.requires_grad]
        optimizer = torch.optim.SGD(trainable, lr=0.1)
        upstream(wavs, torch.tensor([1.0, 0.6])).pow(2).mean().backward()
        optimizer.step()
        after = upstream.model.state_dict()
        changed[freeze, freeze_cnn] = {
            k for k in before if not torch.equal(before[k], after[k])
        }
    cnn = {k for k in before if k.startswith("feature_extractor.")}
    assert changed[True, False] == set()
    assert changed[False, True] and not changed[False, True] & cnn
    assert changed[False, False] & cnn
    assert not any(k.endswith("log_alpha") for k in changed[False, False])


@pytest.mark.slow
def test_upstream_trains_only_when_unfrozen_and_cnn_stays_when_asked(
    tones, tiny_wavlm, tmp_path
):
    initial = PrunableSSLEncoder.from_hf(tiny_wavlm).state_dict()
    cnn = {name for name in initial if name.startswith("feature_extractor.")}
    rest = set(initial) - cnn

    frozen = _run(tones, tiny_wavlm, tmp_path / "frozen")
    assert not (frozen / "upstream_model.ckpt").exists()  # nothing to save

    keep_cnn = _run(
        tones,
        tiny_wavlm,
        tmp_path / "keep_cnn",
        "--freeze_upstream=False",
        "--freeze_upstream_cnn=True",
    )
    changed = _changed(initial, keep_cnn / "upstream_model.ckpt")
    assert changed and not changed & cnn
    assert len(changed & rest) > len(rest) // 2
    assert (keep_cnn / "upstream_optimizer.ckpt").exists()

    everything = _run(
        tones,
        tiny_wavlm,
        tmp_path / "everything",
        "--freeze_upstream=False",
        "--freeze_upstream_cnn=False",
    )
    changed = _changed(initial, everything / "upstream_model.ckpt")
    assert changed & cnn and changed & rest
    log = (tmp_path / "everything" / "train_log.txt").read_text()
    assert "upstream_lr: 1.00e-02" in log


@pytest.mark.slow
def test_finetuning_under_ddp(tones, tiny_wavlm, tmp_path):
    args = recipe_args(
        YAML,
        tmp_path,
        tones,
        upstream_source=tiny_wavlm,
        number_of_epochs=2,
        batch_size=2,
        freeze_upstream=False,
    )
    launcher = ["--nproc_per_node=2", "--master_port=29541"]
    run_recipe(YAML, [*args, "--distributed_backend=gloo"], launcher=launcher)
    initial = PrunableSSLEncoder.from_hf(tiny_wavlm).state_dict()
    checkpoint = sorted((tmp_path / "save").glob("CKPT+*"))[-1]
    changed = _changed(initial, checkpoint / "upstream_model.ckpt")
    assert changed and not any(n.startswith("feature_extractor.") for n in changed)
