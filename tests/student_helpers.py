"""Shared helpers of the student tests: tiny random HF models and a padded batch."""

import torch

from speechbrain_skill.lobes.frames import (
    conv_output_lengths,
    lengths_to_mask,
    normalize_waveforms,
    relative_to_absolute,
)
from speechbrain_skill.lobes.hf_ssl import _model_classes
from speechbrain_skill.lobes.student import StudentConfig
from speechbrain_skill.lobes.tiny_models import tiny_config


def tiny_student_config(model_type="wavlm", **fields):
    """The tiny student of the gate tests: width 32, 2 layers, 4 heads, FFN 64."""
    return StudentConfig.uniform(
        model_type,
        32,
        2,
        4,
        64,
        16,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
        **fields,
    )


PRE_LN = dict(do_stable_layer_norm=True, feat_extract_norm="layer", conv_bias=True)


def random_hf_model(model_type, seed=0, **overrides):
    """Tiny random HF model; WavLM bias table and gate constants made non-trivial."""
    torch.manual_seed(seed)
    model = _model_classes()[model_type](tiny_config(model_type, **overrides)).eval()
    if model_type == "wavlm":
        with torch.no_grad():
            model.encoder.layers[0].attention.rel_attn_embed.weight.normal_(0.0, 2.0)
            for layer in model.encoder.layers:
                layer.attention.gru_rel_pos_const.uniform_(0.5, 2.0)
    return model


def padded_batch(num_samples=16000, seed=0):
    """Three random waveforms with relative lengths 1, 0.61 and 0.3."""
    generator = torch.Generator().manual_seed(seed)
    wavs = torch.randn(3, num_samples, generator=generator)
    return wavs, torch.tensor([1.0, 0.61, 0.3])


def hf_hidden_states(hf_model, wavs, wav_lens=None, normalize_waveform=False):
    """Hugging Face's own ``output_hidden_states`` for a padded batch (the truth).

    Padding goes to the model as an attention mask built from the relative
    lengths; returns the stacked states and the real frames per utterance.
    """
    lengths = relative_to_absolute(wav_lens, wavs.shape[1], batch_size=wavs.shape[0])
    if normalize_waveform:
        wavs = normalize_waveforms(wavs, lengths)
    mask = lengths_to_mask(lengths, wavs.shape[1]).long()
    with torch.no_grad():
        out = hf_model(wavs, attention_mask=mask, output_hidden_states=True)
    hidden = torch.stack(out.hidden_states)
    config = hf_model.config
    frame_lens = conv_output_lengths(lengths, config.conv_kernel, config.conv_stride)
    return hidden, frame_lens.clamp(max=hidden.shape[2])
