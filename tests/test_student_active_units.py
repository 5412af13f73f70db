"""Skipping units with a zero gate value changes no output and no gradient.

The truth is the same model computing every unit (skipping switched off),
fed the same gate samples (same seed) and the same input.
"""

import pytest
import torch
from student_helpers import PRE_LN, padded_batch, tiny_student_config

from speechbrain_skill.lobes.student import PrunableSSLEncoder
from speechbrain_skill.lobes.student import active_units as active_units_module


def _student(model_type="wavlm", **fields):
    config = tiny_student_config(
        model_type,
        prune_conv=True,
        prune_heads=True,
        prune_ffn_units=True,
        **fields,
    )
    torch.manual_seed(0)
    student = PrunableSSLEncoder(config)
    # Half of every gate's units strongly off, the rest spread out: samples
    # hold exact zeros, exact ones and soft values.
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for gate in student.named_gates().values():
            values = torch.randn(gate.num_units, generator=generator) * 2.0
            values[: gate.num_units // 2] = -12.0
            values[0] = 12.0
            order = torch.randperm(gate.num_units, generator=generator)
            gate.log_alpha.copy_(values[order])
    return student


def _run(student, wavs, wav_lens, skip, monkeypatch, seed=3):
    monkeypatch.setattr(active_units_module, "MAX_KEPT_FRACTION", 1.0 if skip else -1.0)
    student.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    hidden, _ = student(wavs, wav_lens)
    (hidden * torch.linspace(-1.0, 1.0, hidden.shape[-1])).sum().backward()
    grads = {n: p.grad.clone() for n, p in student.named_parameters()}
    return hidden.detach(), grads


@pytest.mark.parametrize(
    "model_type, fields",
    [("wavlm", {}), ("hubert", {}), ("wav2vec2", PRE_LN)],
    ids=["wavlm", "hubert", "wav2vec2-pre-ln"],
)
def test_skipping_zero_gated_units_is_exact_in_training(
    model_type, fields, monkeypatch
):
    student = _student(model_type, **fields).train()
    wavs, wav_lens = padded_batch()
    full, full_grads = _run(student, wavs, wav_lens, False, monkeypatch)
    skipped, skipped_grads = _run(student, wavs, wav_lens, True, monkeypatch)
    # The samples really had zeros (otherwise nothing was skipped).
    torch.manual_seed(3)
    assert any(bool((g() == 0).any()) for g in student.named_gates().values())
    torch.testing.assert_close(skipped, full, rtol=1e-5, atol=1e-5)
    assert full_grads.keys() == skipped_grads.keys()
    for name, grad in full_grads.items():
        # Float summation order differs: tolerance relative to the gradient's
        # scale (key biases have mathematically zero gradients: rounding noise).
        atol = max(1e-4 * float(grad.abs().max()), 1e-5)
        assert torch.allclose(skipped_grads[name], grad, rtol=1e-3, atol=atol), name


def test_skipped_units_get_zero_not_missing_gradients(monkeypatch):
    """Skipped weights get zero gradients (not None): optimizers treat them as usual."""
    student = _student().train()
    wavs, wav_lens = padded_batch()
    _, grads = _run(student, wavs, wav_lens, True, monkeypatch)
    assert all(p.grad is not None for p in student.parameters())
    torch.manual_seed(3)
    conv_gates = [
        layer.channel_gate() for layer in student.feature_extractor.conv_layers
    ]
    attention_gate = student.encoder.layers[0].attention.head_gate()
    ffn_gate = student.encoder.layers[0].feed_forward.unit_gate()
    zero_units = ffn_gate == 0
    assert zero_units.any() and not zero_units.all()
    inner = grads["encoder.layers.0.feed_forward.intermediate_dense.weight"]
    assert bool((inner[zero_units] == 0).all())
    assert bool((inner[~zero_units].abs().sum(dim=1) > 0).all())
    assert len(conv_gates) == 7 and attention_gate.shape == (4,)


def test_skipping_is_exact_in_eval(monkeypatch):
    student = _student().eval()
    wavs, wav_lens = padded_batch()
    with torch.no_grad():
        monkeypatch.setattr(active_units_module, "MAX_KEPT_FRACTION", -1.0)
        full, _ = student(wavs, wav_lens)
        monkeypatch.setattr(active_units_module, "MAX_KEPT_FRACTION", 1.0)
        skipped, _ = student(wavs, wav_lens)
    torch.testing.assert_close(skipped, full, rtol=1e-5, atol=1e-5)
