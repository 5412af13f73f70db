"""The unpruned student reproduces Hugging Face hidden states (fp32, eval, padding)."""

import pytest
import torch
from student_helpers import PRE_LN, hf_hidden_states, padded_batch, random_hf_model

from speechbrain_skill.lobes.hf_ssl import load_hf_ssl_model
from speechbrain_skill.lobes.student import PrunableSSLEncoder

TOLERANCE = 1e-4


@pytest.mark.parametrize("model_type", ["wavlm", "hubert", "wav2vec2"])
@pytest.mark.parametrize("layer_norm", ["post", "pre"])
def test_unpruned_student_matches_hf_hidden_states(model_type, layer_norm):
    overrides = PRE_LN if layer_norm == "pre" else {}
    if model_type == "wavlm":
        # Small bucket range so that 49 frames reach the log-spaced buckets.
        overrides = dict(overrides, num_buckets=32, max_bucket_distance=64)
    hf_model = random_hf_model(model_type, **overrides)
    student = PrunableSSLEncoder.from_hf(hf_model)
    wavs, wav_lens = padded_batch()
    expected, expected_lens = hf_hidden_states(hf_model, wavs, wav_lens)
    with torch.no_grad():
        hidden, frame_lens = student(wavs, wav_lens)
    assert hidden.shape == expected.shape == (5, 3, 49, 32)
    assert frame_lens.tolist() == expected_lens.tolist() == [49, 30, 14]
    assert (hidden - expected).abs().max().item() < TOLERANCE


def test_wavlm_default_buckets_long_input(tiny_wavlm):
    """Real bucket settings (320 / 800) on 249 frames, loaded from a saved folder."""
    student = PrunableSSLEncoder.from_hf(tiny_wavlm)
    assert student.config.num_buckets == 320
    wavs, _ = padded_batch(80000)
    wav_lens = torch.tensor([1.0, 0.4, 0.77])
    expected, _ = hf_hidden_states(load_hf_ssl_model(tiny_wavlm), wavs, wav_lens)
    with torch.no_grad():
        hidden, _ = student(wavs, wav_lens)
    assert (hidden - expected).abs().max().item() < TOLERANCE


def test_no_lengths_means_no_padding(tiny_hubert):
    student = PrunableSSLEncoder.from_hf(tiny_hubert)
    wavs, _ = padded_batch()
    with torch.no_grad():
        full, lens = student(wavs, torch.ones(3))
        none, none_lens = student(wavs)
    assert torch.allclose(full, none, atol=1e-6)
    assert lens.tolist() == none_lens.tolist() == [49, 49, 49]


def test_first_layers_only_match_teacher_prefix():
    hf_model = random_hf_model("hubert")
    student = PrunableSSLEncoder.from_hf(hf_model, num_layers=2)
    wavs, wav_lens = padded_batch()
    expected, _ = hf_hidden_states(hf_model, wavs, wav_lens)
    with torch.no_grad():
        hidden, _ = student(wavs, wav_lens)
    assert hidden.shape[0] == 3
    assert (hidden - expected[:3]).abs().max().item() < TOLERANCE


def test_waveform_normalisation_matches_teacher():
    hf_model = random_hf_model("wav2vec2")
    student = PrunableSSLEncoder.from_hf(hf_model, normalize_waveform=True)
    wavs, wav_lens = padded_batch()
    wavs = 0.1 * wavs + 0.3
    expected, _ = hf_hidden_states(hf_model, wavs, wav_lens, normalize_waveform=True)
    with torch.no_grad():
        hidden, _ = student(wavs, wav_lens)
    assert student.config.normalize_waveform
    assert (hidden - expected).abs().max().item() < TOLERANCE


def test_normalisation_default_read_from_source(tiny_wavlm):
    assert PrunableSSLEncoder.from_hf(tiny_wavlm).config.normalize_waveform is False


def test_extract_features_selects_hidden_states(tiny_wavlm):
    student = PrunableSSLEncoder.from_hf(tiny_wavlm)
    wavs, wav_lens = padded_batch()
    with torch.no_grad():
        hidden, lens = student(wavs, wav_lens)
        selected, selected_lens = student.extract_features(wavs, wav_lens, [0, 2, -1])
    assert len(selected) == 3
    for state, index in zip(selected, [0, 2, 4]):
        assert torch.equal(state, hidden[index])
    assert torch.equal(lens, selected_lens)
    with pytest.raises(IndexError):
        student.extract_features(wavs, wav_lens, [5])


def test_unsupported_hf_option_is_refused():
    hf_model = random_hf_model("hubert", conv_pos_batch_norm=True)
    with pytest.raises(ValueError, match="conv_pos_batch_norm"):
        PrunableSSLEncoder.from_hf(hf_model)
