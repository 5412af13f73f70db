"""Robust distillation: corruption, enhancement head, RobustDistiller, robust SKILL."""

import json

import numpy as np
import pytest
import soundfile as sf
import torch
from hyperpyyaml import load_hyperpyyaml
from recipe_runner import RECIPE, recipe_args, run_recipe

from speechbrain_skill.data.corruption import SpeechCorruption, snr_db
from speechbrain_skill.data.dataio import AudioBatch
from speechbrain_skill.data.rir import synthetic_rir
from speechbrain_skill.distillation import stages
from speechbrain_skill.distillation.brains import (
    DistillationBrain,
    PruningDistillationBrain,
)
from speechbrain_skill.distillation.lagrangian import SparsityLagrangian
from speechbrain_skill.distillation.losses import DistillationLoss, EnhancementLoss
from speechbrain_skill.lobes.enhancement import EnhancementHead
from speechbrain_skill.lobes.heads import LayerProjections, PredictionHeads
from speechbrain_skill.lobes.student import PrunableSSLEncoder, load_student
from speechbrain_skill.lobes.teacher import FrozenSSLTeacher

LENGTHS = torch.tensor([1.0, 0.6, 0.3])


def padded_speech_like_batch(seed=0):
    """Three utterances of 16000, 9600, 4800 samples; padding holds a sentinel."""
    generator = torch.Generator().manual_seed(seed)
    wavs = torch.randn(3, 16000, generator=generator) * 0.1
    wavs *= torch.sin(torch.linspace(0, 30, 16000)).abs()  # some envelope
    for row, length in enumerate((16000, 9600, 4800)):
        wavs[row, length:] = 0.25  # anything touched would change
    return wavs, [16000, 9600, 4800]


@pytest.fixture(scope="module")
def noise_csv(tmp_path_factory):
    """A SpeechBrain noise csv of short coloured-noise files (shorter than speech)."""
    folder = tmp_path_factory.mktemp("noise")
    rows = ["ID,duration,wav,wav_format,wav_opts"]
    rng = np.random.default_rng(0)
    for index in range(3):
        noise = np.cumsum(rng.standard_normal(3000 + 1000 * index)).astype("float32")
        noise = (noise - noise.mean()) / noise.std() * 0.05
        sf.write(str(folder / f"noise{index}.wav"), noise, 16000)
        path = f"$noise_root/noise{index}.wav"
        rows.append(f"noise{index},{len(noise) / 16000},{path},wav,")
    (folder / "noise.csv").write_text("\n".join(rows) + "\n")
    return folder


@pytest.fixture(scope="module")
def rir_csv(tmp_path_factory):
    """A SpeechBrain RIR csv of two synthetic impulse responses."""
    folder = tmp_path_factory.mktemp("rirs")
    rows = ["ID,duration,wav,wav_format,wav_opts"]
    for index, rt60 in enumerate((0.3, 0.6)):
        rir = synthetic_rir(rt60, 0.0, generator=torch.Generator().manual_seed(index))
        sf.write(str(folder / f"rir{index}.wav"), rir.numpy(), 16000)
        rows.append(f"rir{index},{rt60},{folder / f'rir{index}.wav'},wav,")
    (folder / "rirs.csv").write_text("\n".join(rows) + "\n")
    return folder / "rirs.csv"


# ---------------------------------------------------------------- corruption
@pytest.mark.parametrize("choice", ["clean", "noise", "reverb", "noise_reverb"])
def test_corruption_leaves_padding_untouched(choice):
    torch.manual_seed(1)
    wavs, lengths = padded_speech_like_batch()
    out = SpeechCorruption(corruptions=[choice])(wavs, LENGTHS)
    for row, length in enumerate(lengths):
        assert torch.equal(out[row, length:], wavs[row, length:])
        changed = not torch.equal(out[row, :length], wavs[row, :length])
        assert changed == (choice != "clean")


@pytest.mark.parametrize("kind", ["white", "coloured", "file"])
@pytest.mark.parametrize("snr", [0.0, 7.5, 20.0])
def test_noise_reaches_the_requested_snr_on_the_real_samples(noise_csv, kind, snr):
    torch.manual_seed(2)
    wavs, lengths = padded_speech_like_batch()
    settings = dict(corruptions=["noise"], snr_low=snr, snr_high=snr)
    if kind == "file":
        settings.update(
            noise_csv=noise_csv / "noise.csv",
            replacements={"noise_root": str(noise_csv)},
            file_noise_prob=1.0,
        )
    else:
        settings.update(file_noise_prob=1.0 if kind == "coloured" else 0.0)
    corruption = SpeechCorruption(**settings)
    out = corruption(wavs, LENGTHS)
    assert corruption.noise.last_kind == kind
    for row, length in enumerate(lengths):
        measured = float(snr_db(wavs[row, :length], out[row, :length]))
        assert abs(measured - snr) < 0.5, (row, measured)
        assert torch.equal(out[row, length:], wavs[row, length:])


def test_snr_and_corruption_are_drawn_per_utterance():
    torch.manual_seed(3)
    corruption = SpeechCorruption(snr_low=5.0, snr_high=15.0)
    wavs = torch.randn(64, 800)
    corruption(wavs, torch.ones(64))
    assert set(corruption.last_corruptions) == {
        "clean",
        "noise",
        "reverb",
        "noise_reverb",
    }
    snrs = [s for s in corruption.last_snrs if s is not None]
    assert all(5.0 <= s <= 15.0 for s in snrs) and len(set(snrs)) == len(snrs)


def test_reverb_from_an_rir_csv_uses_the_real_samples_only(rir_csv):
    torch.manual_seed(4)
    wavs, lengths = padded_speech_like_batch()
    corruption = SpeechCorruption(corruptions=["reverb"], rir_csv=rir_csv)
    assert type(corruption.reverb).__name__ == "AddReverb"
    out = corruption(wavs, LENGTHS)
    for row, length in enumerate(lengths):
        assert torch.equal(out[row, length:], wavs[row, length:])
        assert not torch.allclose(out[row, :length], wavs[row, :length])


def test_bad_corruption_settings_fail_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="noise_csv"):
        SpeechCorruption(noise_csv=tmp_path / "missing.csv")
    with pytest.raises(ValueError, match="corruptions"):
        SpeechCorruption(corruptions=["babble"])
    with pytest.raises(ValueError, match="snr_low"):
        SpeechCorruption(snr_low=10.0, snr_high=0.0)


def test_synthetic_rir_decays_and_keeps_the_direct_path_largest():
    rir = synthetic_rir(0.5, -10.0, generator=torch.Generator().manual_seed(0))
    assert len(rir) == 8000 and int(rir.abs().argmax()) == 0
    tenth = len(rir) // 10
    early, late = rir[1:tenth].pow(2).sum(), rir[-tenth:].pow(2).sum()
    assert 10 * torch.log10(early / late) > 40


# ---------------------------------------------------------------- enhancement
def test_enhancement_head_output_matches_the_clean_stft():
    head = EnhancementHead(16, hidden_size=8, num_layers=2)
    clean = torch.randn(2, 12345)
    noisy = clean + 0.1 * torch.randn(2, 12345)
    features = torch.randn(2, 38, 16)  # 20 ms frames of 12345 samples
    enhanced, frame_lens = head(features, noisy, torch.tensor([1.0, 0.5]))
    target = head.magnitude(clean)
    assert enhanced.shape == target.shape == (2, 12345 // 160 + 1, 257)
    assert frame_lens.tolist() == [78, 39]
    assert torch.all(enhanced[1, 39:] == 0)
    assert torch.all(enhanced <= head.magnitude(noisy) + 1e-6)  # a mask in (0, 1)


def test_enhancement_loss_reaches_the_student_cnn_without_an_extra_pass(tiny_wavlm):
    student = PrunableSSLEncoder.from_hf(tiny_wavlm, num_layers=2).train()
    calls = []
    student.register_forward_hook(lambda *args: calls.append(1))
    modules = type("Modules", (), {})()
    modules.student = student
    modules.enhancement = EnhancementHead(16, hidden_size=8, num_layers=1)
    loss_fn = EnhancementLoss(weight=2.0, features="conv")
    clean = torch.randn(2, 16000)
    noisy = clean + 0.3 * torch.randn(2, 16000)
    outputs = {"student_wavs": noisy, "wavs": clean, "wav_lens": torch.ones(2)}
    loss_fn(modules, outputs, None)  # first call: attaches the tap, one pass
    assert len(calls) == 1
    student(noisy, torch.ones(2))  # what the Brain does before the loss
    loss, parts = loss_fn(modules, outputs, None)
    assert len(calls) == 2 and parts["enhancement_loss"] > 0
    loss.backward()
    conv = student.feature_extractor.conv_layers[0].conv.weight
    assert conv.grad is not None and conv.grad.abs().sum() > 0
    assert all(p.grad is not None for p in modules.enhancement.parameters())


def test_every_distillation_recipe_has_the_robust_switch():
    yamls = sorted((RECIPE / "hparams").glob("*.yaml"))
    assert len(yamls) >= 7
    for path in yamls:
        text = path.read_text()
        assert "\nrobust: " in text and "robust_block: !include:" in text, path.name
        assert "student_input_transform: !ref <robust_block" in text, path.name


def test_conv_features_with_conv_pruning_fail_before_training(tmp_path, tiny_wavlm):
    overrides = {
        "data_folder": str(tmp_path),
        "output_folder": str(tmp_path / "out"),
        "teacher_source": tiny_wavlm,
        "robust": True,
        "enhancement_features": "conv",
    }
    with open(RECIPE / "hparams" / "skill_wavlm.yaml") as handle:
        hparams = load_hyperpyyaml(handle, overrides)
    with pytest.raises(ValueError, match="enhancement_features: projection"):
        stages.check_models(
            hparams["teacher"],
            hparams["student"],
            hparams["groups"],
            hparams["num_groups"],
            hparams["student_layers"],
            hparams["auxiliary_loss"],
        )


# ---------------------------------------------------------------- fixed batch
def _fixed_batch():
    generator = torch.Generator().manual_seed(0)
    return AudioBatch(
        [
            {"id": "a", "sig": 0.1 * torch.randn(16000, generator=generator)},
            {"id": "b", "sig": 0.1 * torch.randn(11000, generator=generator)},
        ]
    )


def _adamw(params):
    return torch.optim.AdamW(params, lr=1e-3)


def _robust_hparams(**extra):
    return {
        "log_interval": 10**6,
        "student_input_transform": SpeechCorruption(),
        "auxiliary_loss": EnhancementLoss(weight=2.0, features=extra.pop("features")),
        **extra,
    }


def _train_on_fixed_batch(brain, steps=20):
    """Loss terms of ``steps`` optimizer steps on one batch, the same corruption."""
    brain.init_optimizers()
    batch = _fixed_batch()
    distill, enhancement = [], []
    for _ in range(steps):
        torch.manual_seed(0)  # the same corruption (and gate sample) every step
        brain.fit_batch(batch)
        distill.append(brain.last_parts["distill_loss"])
        enhancement.append(brain.last_parts["enhancement_loss"])
    return distill, enhancement


def test_robustdistiller_loss_decreases_on_a_fixed_batch(tiny_wavlm):
    torch.manual_seed(0)
    hparams = _robust_hparams(
        features="conv",
        distill_loss=DistillationLoss(cos_type="neg_log_sigmoid"),
    )
    modules = {
        "teacher": FrozenSSLTeacher(tiny_wavlm),
        "student": PrunableSSLEncoder.from_hf(tiny_wavlm, num_layers=2).train(),
        "heads": PredictionHeads([2, 2, 2], 32),
        "enhancement": EnhancementHead(16, hidden_size=32, num_layers=2),
    }
    brain = DistillationBrain(
        [[2], [3], [4]], modules, _adamw, hparams=hparams, run_opts={}
    )
    distill, enhancement = _train_on_fixed_batch(brain)
    assert distill[-1] < 0.9 * distill[0], distill
    assert enhancement[-1] < 0.9 * enhancement[0], enhancement


def test_robust_skill_loss_decreases_on_a_fixed_batch(tiny_wavlm):
    torch.manual_seed(0)
    hparams = _robust_hparams(
        features="projection",
        distill_loss=DistillationLoss(cos_type="neg_cos"),
        gate_opt_class=lambda params: torch.optim.AdamW(params, lr=0.02),
        lambda_opt_class=lambda params: torch.optim.AdamW(
            params, lr=0.02, maximize=True
        ),
    )
    student = PrunableSSLEncoder.from_hf(
        tiny_wavlm, prune_conv=True, prune_heads=True, prune_ffn_units=True
    ).train()
    modules = {
        "teacher": FrozenSSLTeacher(tiny_wavlm),
        "student": student,
        "heads": LayerProjections([0, 2, 4], 32),
        "lagrangian": SparsityLagrangian(0.5, warmup_steps=20),
        "enhancement": EnhancementHead(32, hidden_size=32, num_layers=2),
    }
    brain = PruningDistillationBrain(
        [[0], [1, 2], [3, 4]], modules, _adamw, hparams=hparams, run_opts={}
    )
    distill, enhancement = _train_on_fixed_batch(brain)
    assert distill[-1] < distill[0] - 0.1 * abs(distill[0]), distill
    assert enhancement[-1] < 0.9 * enhancement[0], enhancement


# ---------------------------------------------------------------- recipes
def _assert_enhancement_saved_and_loadable(checkpoint_root, export, input_dim):
    # The newest checkpoint (names sort by time) holds the exported weights.
    checkpoints = sorted(checkpoint_root.glob("CKPT+*/enhancement.ckpt"))
    assert checkpoints
    saved = torch.load(checkpoints[-1])
    exported = torch.load(export / "enhancement.ckpt")
    assert all(torch.equal(saved[k], exported[k]) for k in exported)
    EnhancementHead(input_dim).load_state_dict(exported)


@pytest.mark.slow
def test_robustdistiller_recipe_trains_exports_and_reloads(
    builtin_corpus, tiny_wavlm, tmp_path
):
    args = recipe_args(
        "robustdistiller_wavlm.yaml",
        tmp_path,
        builtin_corpus,
        teacher_source=tiny_wavlm,
        groups="[[2],[3],[4]]",
        final_steps=5,
    )
    run_recipe("robustdistiller_wavlm.yaml", args)
    history = [json.loads(x) for x in (tmp_path / "final" / "history.jsonl").open()]
    assert [entry["step"] for entry in history] == list(range(1, 6))
    assert all(entry["enhancement_loss"] > 0 for entry in history)
    export = tmp_path / "student"
    _assert_enhancement_saved_and_loadable(
        tmp_path / "final" / "checkpoints", export, input_dim=16
    )
    student = load_student(export)
    assert student.config.num_layers == 2 and student.config.model_type == "wavlm"
    assert (export / "hf" / "config.json").is_file()
    hidden, _ = student(torch.randn(1, 16000))
    assert torch.isfinite(hidden).all()


@pytest.mark.slow
def test_robust_skill_recipe_prunes_exports_and_reloads(
    builtin_corpus, tiny_wavlm, tmp_path
):
    args = recipe_args(
        "skill_wavlm.yaml",
        tmp_path,
        builtin_corpus,
        teacher_source=tiny_wavlm,
        prune_steps=4,
        final_steps=2,
        robust=True,
    )
    run_recipe("skill_wavlm.yaml", args)
    for stage in ("prune", "final"):
        history = [json.loads(x) for x in (tmp_path / stage / "history.jsonl").open()]
        assert all(entry["enhancement_loss"] > 0 for entry in history), stage
    assert (tmp_path / "pruned_student" / "enhancement.ckpt").is_file()
    _assert_enhancement_saved_and_loadable(
        tmp_path / "final" / "checkpoints", tmp_path / "student", input_dim=32
    )
    student = load_student(tmp_path / "student")
    hidden, _ = student(torch.randn(1, 16000))
    assert hidden.shape[0] == student.num_hidden_states
