"""Hidden state 0: the DPHuBERT reference's (before the positional conv) and HF's.

Independent truth: the Hugging Face model's own modules, called directly.
"""

import numpy as np
import pytest
import torch

from speechbrain_skill.layer_groups.similarity import compute_layer_similarity
from speechbrain_skill.lobes.hf_ssl import load_hf_ssl_model
from speechbrain_skill.lobes.student import PrunableSSLEncoder
from speechbrain_skill.lobes.teacher import FrozenSSLTeacher


@pytest.fixture(params=["tiny_hubert", "tiny_wavlm"])
def source(request):
    return request.getfixturevalue(request.param)


def padded_batch():
    generator = torch.Generator().manual_seed(0)
    return torch.randn(2, 16000, generator=generator), torch.tensor([1.0, 0.6])


def test_both_conventions_for_teacher_and_student(source):
    hf = load_hf_ssl_model(source)
    wavs, wav_lens = padded_batch()
    teacher = FrozenSSLTeacher(source)
    student = PrunableSSLEncoder.from_hf(source).eval()
    with torch.no_grad():
        features = hf.feature_extractor(wavs).transpose(1, 2)
        projected = hf.feature_projection(features)
        projected = projected[0] if isinstance(projected, tuple) else projected
        lengths = torch.tensor([16000, 9600])
        frames = hf._get_feat_extract_output_lengths(lengths)
        real = torch.arange(projected.shape[1])[None, :] < frames[:, None]
        truth_projection = projected * real.unsqueeze(-1)
        mask = (torch.arange(16000)[None, :] < lengths[:, None]).long()
        truth_hf = hf(wavs, attention_mask=mask, output_hidden_states=True)
        truth_hf = truth_hf.hidden_states
        for model in (teacher, student):
            ref, _ = model(wavs, wav_lens, hidden_state_zero="projection")
            hf_like, _ = model(wavs, wav_lens, hidden_state_zero="transformer_input")
            assert torch.allclose(ref[0], truth_projection, atol=1e-5)
            assert torch.allclose(
                hf_like[0] * real.unsqueeze(-1),
                truth_hf[0] * real.unsqueeze(-1),
                atol=1e-5,
            )
            assert torch.equal(ref[1:], hf_like[1:])
    # The teacher's own default, and a bad name.
    reference_teacher = FrozenSSLTeacher(source, hidden_state_zero="projection")
    with torch.no_grad():
        assert torch.allclose(
            reference_teacher(wavs, wav_lens)[0][0], truth_projection, atol=1e-5
        )
    with pytest.raises(ValueError, match="hidden_state_zero"):
        student(wavs, hidden_state_zero="hf")


def test_similarity_row_zero_follows_the_convention(tiny_wavlm):
    wavs, wav_lens = padded_batch()
    batches = [(wavs, wav_lens)]
    options = dict(progress=False)
    ref = compute_layer_similarity(
        tiny_wavlm, batches, hidden_state_zero="projection", **options
    )
    hf = compute_layer_similarity(
        tiny_wavlm, batches, hidden_state_zero="transformer_input", **options
    )
    assert np.allclose(ref[1:, 1:], hf[1:, 1:])
    assert not np.allclose(ref[0, 1:], hf[0, 1:])
    assert ref[0, 0] == pytest.approx(1.0)
