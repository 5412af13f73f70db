"""The teacher: Hugging Face weights on our own model, checked against Hugging Face."""

import pytest
import torch
from student_helpers import hf_hidden_states, padded_batch, random_hf_model

from speechbrain_skill.lobes.teacher import FrozenSSLTeacher

TOLERANCE = 1e-4


@pytest.mark.parametrize("model_type", ["wavlm", "hubert", "wav2vec2"])
def test_teacher_matches_hugging_face(model_type):
    hf_model = random_hf_model(model_type)
    teacher = FrozenSSLTeacher(hf_model)
    wavs, wav_lens = padded_batch()
    expected, expected_lens = hf_hidden_states(hf_model, wavs, wav_lens)
    hidden, frame_lens = teacher(wavs, wav_lens)
    assert hidden.shape == expected.shape
    assert frame_lens.tolist() == expected_lens.tolist()
    assert (hidden - expected).abs().max().item() < TOLERANCE


def test_teacher_runs_without_dropout_and_stays_frozen():
    hf_model = random_hf_model("wavlm", hidden_dropout=0.1, attention_dropout=0.1)
    teacher = FrozenSSLTeacher(hf_model).train()
    assert not teacher.model.training
    assert all(not p.requires_grad for p in teacher.parameters())
    config = teacher.model.config
    assert config.hidden_dropout == config.attention_dropout == 0.0
    assert teacher.config is hf_model.config
    wavs, wav_lens = padded_batch()
    first, _ = teacher(wavs, wav_lens)
    second, _ = teacher(wavs, wav_lens)
    assert torch.equal(first, second)


def test_num_layers_computes_only_the_first_layers():
    hf_model = random_hf_model("hubert")
    teacher = FrozenSSLTeacher(hf_model)
    calls = []
    for index, layer in enumerate(teacher.model.encoder.layers):
        layer.register_forward_hook(lambda *args, index=index: calls.append(index))
    wavs, wav_lens = padded_batch()
    full, _ = teacher(wavs, wav_lens)
    calls.clear()
    prefix, _ = teacher(wavs, wav_lens, num_layers=2)
    assert calls == [0, 1]
    assert prefix.shape[0] == 3
    torch.testing.assert_close(prefix, full[:3])


def test_outputs_are_ordinary_tensors_autograd_can_use():
    """Computed in inference mode, returned as tensors a learned weighting can use."""
    teacher = FrozenSSLTeacher(random_hf_model("wavlm"))
    wavs, wav_lens = padded_batch()
    hidden, frame_lens = teacher(wavs, wav_lens)
    features, lens = teacher.extract_features(wavs, wav_lens, layers=[1, -1])
    assert not hidden.is_inference() and not frame_lens.is_inference()
    assert not any(f.is_inference() for f in features) and not lens.is_inference()
    torch.testing.assert_close(features[1], hidden[-1])
    weights = torch.zeros(hidden.shape[0], requires_grad=True)
    mixed = (torch.softmax(weights, 0).view(-1, 1, 1, 1) * hidden).sum(0)
    mixed.pow(2).mean().backward()
    assert weights.grad is not None and not hidden.requires_grad


def test_teacher_follows_the_run_precision():
    teacher = FrozenSSLTeacher(random_hf_model("wavlm"))
    wavs, wav_lens = padded_batch()
    full, _ = teacher(wavs, wav_lens)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        half, _ = teacher(wavs, wav_lens)
    assert half.dtype == torch.bfloat16
    # bf16 keeps about 3 significant digits.
    scale = full.abs().max().item()
    assert (half.float() - full).abs().max().item() < 0.1 * scale
