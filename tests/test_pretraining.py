"""HuBERT-style pretraining: labels, masking, loss, the recipe, the shipped teacher."""

import json
import os
import re
from pathlib import Path

import pytest
import torch
from recipe_runner import recipe_args, run_recipe
from transformers import WavLMModel

from speechbrain_skill.data.audio import BadAudioError
from speechbrain_skill.data.dataio import make_audio_dataloader
from speechbrain_skill.lobes.frames import conv_output_lengths
from speechbrain_skill.lobes.hf_ssl import BUILTIN_DIR, load_hf_ssl_model
from speechbrain_skill.lobes.teacher import FrozenSSLTeacher
from speechbrain_skill.lobes.tiny_models import save_tiny_model
from speechbrain_skill.pretraining.collate import LabelledCropCollate
from speechbrain_skill.pretraining.export import export_pretrained
from speechbrain_skill.pretraining.features import (
    HiddenStateFeaturizer,
    MFCCFeaturizer,
)
from speechbrain_skill.pretraining.head import (
    MaskedPredictionHead,
    masked_prediction_loss,
)
from speechbrain_skill.pretraining.kmeans import KMeans
from speechbrain_skill.pretraining.labels import FrameLabels, prepare_cluster_labels
from speechbrain_skill.pretraining.masking import compute_span_mask
from speechbrain_skill.pretraining.model import wavlm_pretraining_config

REPO = Path(__file__).resolve().parent.parent
RECIPE = REPO / "recipes" / "LibriSpeech" / "self-supervised-learning" / "hubert"
YAML = RECIPE / "hparams" / "hubert_wavlm.yaml"
KERNELS, STRIDES = (10, 3, 3, 3, 3, 2, 2), (5, 2, 2, 2, 2, 2, 2)
TINY_SIZE = dict(
    hidden_size=32,
    num_layers=2,
    num_heads=2,
    ffn_size=64,
    conv_channels=16,
    pos_conv_kernel=16,
    pos_conv_groups=4,
)


# ------------------------------------------------------------------ masking


def test_span_mask_respects_lengths_and_spans():
    lengths = torch.tensor([100, 37, 5, 0])
    gen = torch.Generator().manual_seed(0)
    mask = compute_span_mask(lengths, 100, mask_prob=0.8, span_length=10, generator=gen)
    assert mask.shape == (4, 100)
    assert not mask[1, 37:].any() and not mask[2, 5:].any() and not mask[3].any()
    # HuBERT's 0.8 / 10 masks roughly half of a long utterance (spans overlap).
    assert 0.3 < mask[0].float().mean() < 0.8
    # Every masked run is at least one span long, except in utterances shorter
    # than a span (masked whole).
    runs = re.findall("1+", "".join(str(int(v)) for v in mask[0]))
    assert min(len(r) for r in runs) >= 10
    assert mask[2, :5].all()
    again = compute_span_mask(
        lengths, 100, 0.8, 10, generator=torch.Generator().manual_seed(0)
    )
    assert torch.equal(mask, again)


def test_span_mask_rejects_bad_settings():
    with pytest.raises(ValueError, match="mask_prob"):
        compute_span_mask(torch.tensor([10]), 10, mask_prob=1.5)
    with pytest.raises(ValueError, match="span_length"):
        compute_span_mask(torch.tensor([10]), 10, span_length=0)


# ------------------------------------------------------------------ k-means / labels


def test_kmeans_state_round_trip_and_too_few_points():
    gen = torch.Generator().manual_seed(1)
    points = torch.randn(200, 3, generator=gen)
    km = KMeans(5, seed=0, num_init=2).fit(points)
    again = KMeans.from_state_dict(km.state_dict())
    assert torch.equal(km.predict(points), again.predict(points))
    with pytest.raises(ValueError, match="at least 5 points"):
        KMeans(5).fit(points[:3])


def test_mfcc_frames_match_model_frames():
    featurizer = MFCCFeaturizer()
    for samples in (400, 719, 720, 16000, 23456):
        frames = featurizer(torch.randn(samples)).shape[0]
        expected = conv_output_lengths(torch.tensor([samples]), KERNELS, STRIDES)
        assert frames == int(expected)


@pytest.fixture(scope="module")
def mfcc_labels(manifests, tmp_path_factory):
    folder = tmp_path_factory.mktemp("labels")
    paths = prepare_cluster_labels(
        str(manifests / "train-clean-100.csv"),
        {
            "train": str(manifests / "train-clean-100.csv"),
            "valid": str(manifests / "dev-clean.csv"),
        },
        folder,
        MFCCFeaturizer(),
        num_clusters=8,
        max_iter=20,
    )
    return folder, paths


def test_labels_cover_every_frame_and_stage_is_skipped(mfcc_labels, manifests):
    folder, paths = mfcc_labels
    labels = FrameLabels.load(paths["train"])
    loader = make_audio_dataloader(str(manifests / "train-clean-100.csv"), 1)
    for batch in loader:
        utt = batch.id[0]
        samples = batch.sig.data.shape[1]
        expected = conv_output_lengths(torch.tensor([samples]), KERNELS, STRIDES)
        assert len(labels[utt]) == int(expected)
    assert labels.values.min() >= 0 and labels.values.max() < 8
    summary = json.loads((folder / "labels_summary.json").read_text())
    assert summary["train"]["clusters_used"] == 8
    before = os.path.getmtime(paths["train"])
    prepare_cluster_labels(
        str(manifests / "train-clean-100.csv"),
        {
            "train": str(manifests / "train-clean-100.csv"),
            "valid": str(manifests / "dev-clean.csv"),
        },
        folder,
        MFCCFeaturizer(),
        num_clusters=8,
        max_iter=20,
    )
    assert os.path.getmtime(paths["train"]) == before


def test_iteration_two_labels_from_hidden_states(manifests, tiny_wavlm, tmp_path):
    featurizer = HiddenStateFeaturizer(tiny_wavlm)
    assert featurizer.layer == 2  # middle of 4 layers
    paths = prepare_cluster_labels(
        str(manifests / "dev-clean.csv"),
        {"valid": str(manifests / "dev-clean.csv")},
        tmp_path,
        featurizer,
        num_clusters=4,
        max_iter=10,
    )
    labels = FrameLabels.load(paths["valid"])
    assert len(labels) == 8
    with pytest.raises(ValueError, match="does not exist"):
        HiddenStateFeaturizer(tiny_wavlm, layer=9)


# ------------------------------------------------------------------ collation


def test_crops_are_frame_aligned_and_bad_examples_skipped():
    labels = FrameLabels(
        {"a": torch.arange(149), "b": torch.arange(99), "d": torch.arange(10)}, 200
    )
    collate = LabelledCropCollate(labels, max_crop_seconds=1.0, random_crop=True)
    torch.manual_seed(0)
    wav_a = torch.arange(48000, dtype=torch.float32)
    for _ in range(5):
        batch = collate(
            [
                {"id": "a", "sig": wav_a},
                {"id": "b", "sig": torch.zeros(32000)},
                {"id": "c", "sig": torch.zeros(16000)},  # no labels
                {"id": "d", "sig": torch.zeros(20000)},  # label count mismatch
                {"id": "e", "sig": BadAudioError("e.flac", "missing")},
            ]
        )
        wavs, _ = batch.sig
        lab, _ = batch.labels
        assert wavs.shape == (2, 16000) and lab.shape == (2, 49)
        # Labels equal frame indices: the first label is the crop offset / 320.
        offset = int(wavs[0, 0])
        assert offset % 320 == 0 and int(lab[0, 0]) == offset // 320
        reasons = dict(batch.skipped)
        assert reasons["c"] == "no frame labels"
        assert "mismatch" in reasons["d"] and reasons["e"] == "missing"
    labels_d = FrameLabels({"d": torch.arange(3)}, 4)
    empty = LabelledCropCollate(labels_d)([{"id": "x", "sig": torch.zeros(800)}])
    assert len(empty) == 0


# ------------------------------------------------------------------ model + loss


def test_masked_prediction_ignores_padding_and_unknown_labels():
    logits = torch.zeros(1, 4, 3)
    logits[0, :, 1] = 5.0
    labels = torch.tensor([[1, 1, -100, 0]])
    mask = torch.tensor([[True, True, True, True]])
    valid = torch.tensor([[True, True, True, False]])
    stats = masked_prediction_loss(logits, labels, mask, valid=valid)
    assert stats.num_masked == 2 and stats.masked_correct == 2
    assert float(stats.loss) < 0.02


def _fixed_batch(manifests, labels):
    collate = LabelledCropCollate(labels, max_crop_seconds=1.5, random_crop=False)
    loader = make_audio_dataloader(str(manifests / "train-clean-100.csv"), 4)
    examples = []
    for batch in loader:
        for utt, wav, rel in zip(batch.id, batch.sig.data, batch.sig.lengths):
            examples.append(
                {"id": utt, "sig": wav[: int(round(float(rel) * len(wav)))]}
            )
        if len(examples) >= 4:
            break
    return collate(examples[:4])


def test_loss_decreases_on_a_fixed_batch_and_export_loads(
    manifests, mfcc_labels, tmp_path
):
    torch.manual_seed(0)
    labels = FrameLabels.load(mfcc_labels[1]["train"])
    batch = _fixed_batch(manifests, labels)
    model = WavLMModel(wavlm_pretraining_config(dropout=0.0, **TINY_SIZE))
    head = MaskedPredictionHead(32, labels.num_clusters, final_dim=16)
    params = list(model.parameters()) + list(head.parameters())
    optimizer = torch.optim.AdamW(params, lr=2e-3)
    wavs, _ = batch.sig
    targets, _ = batch.labels
    frames = targets.shape[1]
    mask = compute_span_mask(
        torch.full((4,), frames), frames, 0.8, 5, generator=torch.Generator()
    )
    losses = []
    model.train()
    for _ in range(12):
        out = model(wavs, mask_time_indices=mask).last_hidden_state
        stats = masked_prediction_loss(head(out), targets, mask)
        optimizer.zero_grad()
        stats.loss.backward()
        optimizer.step()
        losses.append(float(stats.loss))
    assert losses[-1] < 0.8 * losses[0], losses

    path = export_pretrained(model, tmp_path / "export", summary={"steps": 12})
    assert sorted(os.listdir(path)) == [
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
        "pretraining_summary.json",
    ]
    loaded, info = WavLMModel.from_pretrained(path, output_loading_info=True)
    assert not any(info.values()), info  # no missing / unexpected keys
    assert loaded.config.mask_time_prob == 0.0
    assert not hasattr(loaded, "masked_spec_embed")
    model.eval()
    with torch.no_grad():
        expected = model(wavs, output_hidden_states=True).hidden_states
    hidden, _ = FrozenSSLTeacher(path)(wavs)
    torch.testing.assert_close(hidden, torch.stack(expected), atol=1e-5, rtol=1e-4)


# ------------------------------------------------------------------ the recipe


@pytest.mark.slow
def test_recipe_trains_resumes_and_exports(recipe_run, builtin_corpus):
    out, log = recipe_run(YAML)
    assert "HuBERT pretraining summary" in log
    summary = json.loads((out / "export" / "pretraining_summary.json").read_text())
    assert summary["steps"] == 3 and summary["test"]["masked_frames"] > 0
    model = load_hf_ssl_model(out / "export")
    assert model.config.num_hidden_layers == 2
    assert (out / "train_log.txt").read_text().count("valid loss") == 1
    # A second run finds the finished checkpoint and does not train again.
    log = run_recipe(YAML, recipe_args(YAML, out, builtin_corpus))
    summary = json.loads((out / "export" / "pretraining_summary.json").read_text())
    assert summary["steps"] == 3
    assert "Frame labels" in log and "skipping" in log


# ------------------------------------------------------------------ the shipped teacher


def test_shipped_teacher_loads_by_name_and_by_path_and_is_not_random(tmp_path):
    folder = BUILTIN_DIR / "tiny-wavlm"
    for name in ("config.json", "model.safetensors", "preprocessor_config.json"):
        assert (folder / name).is_file(), name
    assert "masked-prediction accuracy" in (folder / "README.md").read_text()
    by_name = load_hf_ssl_model("builtin:tiny-wavlm")
    by_path = load_hf_ssl_model(str(folder))
    for (key, a), (_, b) in zip(
        by_name.state_dict().items(), by_path.state_dict().items()
    ):
        assert torch.equal(a, b), key
    wav = torch.randn(1, 16000, generator=torch.Generator().manual_seed(0)) * 0.1
    hidden, frame_lens = FrozenSSLTeacher("builtin:tiny-wavlm")(wav)
    config = by_name.config
    assert hidden.shape == (config.num_hidden_layers + 1, 1, 49, config.hidden_size)
    assert torch.isfinite(hidden).all() and frame_lens.tolist() == [49]
    random = save_tiny_model(
        tmp_path,
        "wavlm",
        hidden_size=config.hidden_size,
        num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads,
        intermediate_size=config.intermediate_size,
        conv_dim=config.conv_dim,
        num_conv_pos_embeddings=config.num_conv_pos_embeddings,
        num_conv_pos_embedding_groups=config.num_conv_pos_embedding_groups,
    )
    random_hidden, _ = FrozenSSLTeacher(random)(wav)
    assert random_hidden.shape == hidden.shape
    assert not torch.allclose(random_hidden, hidden)
