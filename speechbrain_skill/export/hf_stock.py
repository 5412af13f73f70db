"""Stock Hugging Face export: a ``WavLMModel`` / ``HubertModel`` / ``Wav2Vec2Model``.

Any tool that loads stock checkpoints (``AutoModel``, SpeechBrain's HF lobes
and ``WeightedSSLModel`` used by MP3S, s3prl's HF upstreams) takes it without
custom code. A pruned student is padded back to the stock shape, exactly:

* removed heads: zero rows of q/k/v and zero columns of the output
  projection (the head's output is exactly 0), WavLM heads keep their
  original index, so the relative-position bias columns stay in place;
* removed FFN units: zero rows / columns and bias (GELU(0) = 0), every layer
  padded to the widest FFN;
* removed attention / FFN blocks, layers with no head or no unit: all weights
  zero, the block's remaining output bias kept;
* conv channels need no padding: stock configs take ``conv_dim`` per layer
  (padding the last conv layer would change the feature-projection LayerNorm
  statistics, so it is never done).

It refuses, with the reasons, what a stock model cannot hold exactly (see
:func:`stock_export_problems`). The padding costs parameters and compute; the
compact export (:mod:`speechbrain_skill.export.hf_compact`) does not.
"""

import logging

import torch

from speechbrain_skill.export.folder import (
    hf_model_config,
    preprocessor_config,
    write_model_folder,
)
from speechbrain_skill.lobes.hf_ssl import _model_classes
from speechbrain_skill.lobes.student.hf_import import _weight_norm_tensors
from speechbrain_skill.training.modules import unwrap

logger = logging.getLogger(__name__)

# Stock parameters the student does not have: the masked-frame embedding, used
# by SpecAugment-style masking in fine-tuning only, keeps its initialisation.
HF_ONLY_PARAMETERS = ("masked_spec_embed",)


def stock_export_problems(student):
    """Why a student cannot be written exactly as a stock model (empty if it can).

    Arguments
    ---------
    student : PrunableSSLEncoder
        The student (a DDP wrapper is unwrapped).

    Returns
    -------
    list of str

    Example
    -------
    >>> from speechbrain_skill.lobes.student import PrunableSSLEncoder, StudentConfig
    >>> config = StudentConfig.uniform("hubert", 32, 2, 4, 64, 16)
    >>> stock_export_problems(PrunableSSLEncoder(
    ...     config.with_updates(ffn_dims=[64, 40], attention_heads=[[1], []])))
    []
    >>> stock_export_problems(PrunableSSLEncoder(
    ...     config.with_updates(do_stable_layer_norm=True)))
    ['pre-LN (stable layer norm) students are not exported as stock models']
    """
    student = unwrap(student)
    config = student.config
    problems = []
    if config.prunable_structures:
        problems.append(
            f"the student still has gates ({', '.join(config.prunable_structures)}); "
            "materialise it with prune() first"
        )
    if config.do_stable_layer_norm:
        problems.append(
            "pre-LN (stable layer norm) students are not exported as stock models"
        )
    if not config.feat_proj_layer_norm and config.model_type != "hubert":
        problems.append(
            f"{config.model_type} always has the feature-projection LayerNorm"
        )
    scale = getattr(student.feature_projection, "channel_scale", None)
    if scale is not None and not torch.all(scale == 1):
        problems.append(
            "the last conv layer was materialised with soft gate values "
            "(channel_scale) in front of the feature-projection LayerNorm; a stock "
            "model has no place for them and folding them through the LayerNorm "
            "is not exact"
        )
    return problems


def stock_config(student_config):
    """The stock Hugging Face config a student is padded to.

    Arguments
    ---------
    student_config : StudentConfig
        Config of a student that passes :func:`stock_export_problems`.

    Returns
    -------
    transformers.PretrainedConfig

    Example
    -------
    >>> from speechbrain_skill.lobes.student import StudentConfig
    >>> config = StudentConfig.uniform("wavlm", 32, 2, 4, 64, 16)
    >>> hf = stock_config(config.with_updates(ffn_dims=[40, 64]))
    >>> type(hf).__name__, hf.num_hidden_layers, hf.intermediate_size
    ('WavLMConfig', 2, 64)
    """
    from speechbrain_skill.lobes.hf_ssl import _config_classes

    c = student_config
    settings = dict(
        hidden_size=c.hidden_size,
        num_hidden_layers=c.num_layers,
        num_attention_heads=c.num_attention_heads,
        intermediate_size=max(c.ffn_dims, default=1) or 1,
        hidden_act=c.hidden_act,
        hidden_dropout=c.hidden_dropout,
        attention_dropout=c.attention_dropout,
        activation_dropout=c.activation_dropout,
        feat_proj_dropout=c.feat_proj_dropout,
        layerdrop=0.0,  # the student is trained without LayerDrop
        layer_norm_eps=c.layer_norm_eps,
        feat_extract_norm=c.feat_extract_norm,
        feat_extract_activation=c.feat_extract_activation,
        conv_dim=tuple(c.conv_channels),
        conv_kernel=tuple(c.conv_kernels),
        conv_stride=tuple(c.conv_strides),
        conv_bias=c.conv_bias,
        num_conv_pos_embeddings=c.num_conv_pos_embeddings,
        num_conv_pos_embedding_groups=c.num_conv_pos_embedding_groups,
        do_stable_layer_norm=c.do_stable_layer_norm,
    )
    if c.model_type == "wavlm":
        settings.update(
            num_buckets=c.num_buckets, max_bucket_distance=c.max_bucket_distance
        )
    if c.model_type == "hubert":
        settings.update(feat_proj_layer_norm=c.feat_proj_layer_norm)
    return _config_classes()[c.model_type](**settings)


def _copy_linear(hf_module, module, rows=None):
    """Copy a Linear / norm / conv into ``hf_module``, into ``rows`` when given."""
    if rows is None:
        hf_module.weight.copy_(module.weight.reshape(hf_module.weight.shape))
        if module.bias is not None:
            hf_module.bias.copy_(module.bias)
        return
    hf_module.weight[rows] = module.weight
    if module.bias is not None:
        hf_module.bias[rows] = module.bias


def _copy_attention(hf_attention, attention, head_dim):
    """Kept heads into their original slots; the output bias always."""
    if attention.num_heads == 0:
        hf_attention.out_proj.bias.copy_(attention.out_bias)
        return
    rows = torch.cat(
        [torch.arange(h * head_dim, (h + 1) * head_dim) for h in attention.head_index]
    )
    for name in ("q_proj", "k_proj", "v_proj"):
        _copy_linear(getattr(hf_attention, name), getattr(attention, name), rows=rows)
    hf_attention.out_proj.weight[:, rows] = attention.out_proj.weight
    hf_attention.out_proj.bias.copy_(attention.out_proj.bias)
    if attention.relative_position_gate:
        const = hf_attention.gru_rel_pos_const
        const.view(-1)[attention.head_index] = attention.gru_rel_pos_const
        _copy_linear(hf_attention.gru_rel_pos_linear, attention.gru_rel_pos_linear)


def _copy_feed_forward(hf_ffn, ffn):
    if ffn.ffn_dim == 0:
        hf_ffn.output_dense.bias.copy_(ffn.out_bias)
        return
    units = torch.arange(ffn.ffn_dim)
    _copy_linear(hf_ffn.intermediate_dense, ffn.intermediate_dense, rows=units)
    hf_ffn.output_dense.weight[:, units] = ffn.output_dense.weight
    hf_ffn.output_dense.bias.copy_(ffn.output_dense.bias)


def _zero_encoder_layers(hf_model):
    """Zero the layers' attention and FFN (removed parts stay exactly zero)."""
    for layer in hf_model.encoder.layers:
        for module in (layer.attention, layer.feed_forward):
            for name, param in module.named_parameters():
                if name.endswith("rel_attn_embed.weight"):
                    continue
                if name.endswith("gru_rel_pos_const"):
                    param.fill_(1.0)
                else:
                    param.zero_()


def student_to_stock(student):
    """Build the stock Hugging Face model holding a student (eval mode, CPU).

    Arguments
    ---------
    student : PrunableSSLEncoder
        A student that passes :func:`stock_export_problems`.

    Returns
    -------
    transformers.PreTrainedModel

    Example
    -------
    >>> from speechbrain_skill.lobes.student import PrunableSSLEncoder, StudentConfig
    >>> config = StudentConfig.uniform("hubert", 32, 2, 4, 64, 16,
    ...     num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4)
    >>> pruned = config.with_updates(attention_heads=[[0, 3], []], ffn_dims=[9, 0])
    >>> student = PrunableSSLEncoder(pruned).eval()
    >>> wavs = torch.randn(1, 16000)
    >>> hf = student_to_stock(student)(wavs, output_hidden_states=True).hidden_states
    >>> torch.allclose(torch.stack(hf), student(wavs)[0], atol=1e-5)
    True
    """
    student = unwrap(student).cpu()
    problems = stock_export_problems(student)
    if problems:
        raise ValueError(
            "No exact stock Hugging Face model for this student: "
            + "; ".join(problems)
            + "."
        )
    config = student.config
    with torch.random.fork_rng(devices=[]):
        hf_model = _model_classes()[config.model_type](stock_config(config)).eval()
    with torch.no_grad():
        _zero_encoder_layers(hf_model)
        for hf_layer, layer in zip(
            hf_model.feature_extractor.conv_layers,
            student.feature_extractor.conv_layers,
        ):
            _copy_linear(hf_layer.conv, layer.conv)
            if layer.norm is not None:
                _copy_linear(hf_layer.layer_norm, layer.norm)
        hf_projection = hf_model.feature_projection
        projection = student.feature_projection
        if projection.layer_norm is not None:
            _copy_linear(hf_projection.layer_norm, projection.layer_norm)
        _copy_linear(hf_projection.projection, projection.projection)
        hf_encoder, encoder = hf_model.encoder, student.encoder
        hf_conv, conv = hf_encoder.pos_conv_embed.conv, encoder.pos_conv_embed.conv
        for hf_tensor, tensor in zip(
            _weight_norm_tensors(hf_conv), _weight_norm_tensors(conv)
        ):
            hf_tensor.copy_(tensor)
        hf_conv.bias.copy_(conv.bias)
        _copy_linear(hf_encoder.layer_norm, encoder.layer_norm)
        if encoder.relative_position is not None:
            hf_encoder.layers[0].attention.rel_attn_embed.weight.copy_(
                encoder.relative_position.rel_attn_embed.weight
            )
        for hf_layer, layer in zip(hf_encoder.layers, encoder.layers):
            if layer.attention is not None:
                _copy_attention(hf_layer.attention, layer.attention, config.head_dim)
            if layer.attention_layer_norm is not None:
                _copy_linear(hf_layer.layer_norm, layer.attention_layer_norm)
            if layer.feed_forward is not None:
                _copy_feed_forward(hf_layer.feed_forward, layer.feed_forward)
            if layer.final_layer_norm is not None:
                _copy_linear(hf_layer.final_layer_norm, layer.final_layer_norm)
    return hf_model


def save_hf_stock(student, directory, readme=None):
    """Write a student as a stock Hugging Face model folder (padded when pruned).

    Arguments
    ---------
    student : PrunableSSLEncoder
        A student that passes :func:`stock_export_problems`.
    directory : str or os.PathLike
        Output folder (created).
    readme : str, optional
        Model card.

    Returns
    -------
    str
        The folder.

    Example
    -------
    >>> import tempfile
    >>> from transformers import AutoModel
    >>> from speechbrain_skill.lobes.student import PrunableSSLEncoder, StudentConfig
    >>> student = PrunableSSLEncoder(StudentConfig.uniform("wavlm", 32, 2, 4, 64, 16))
    >>> path = save_hf_stock(student, tempfile.mkdtemp())
    >>> type(AutoModel.from_pretrained(path)).__name__
    'WavLMModel'
    """
    student = unwrap(student)
    hf_model = student_to_stock(student)
    return write_model_folder(
        directory,
        hf_model_config(hf_model),
        tensors=hf_model.state_dict(),
        # The stock model cannot normalise: its preprocessor does, as on the hub.
        preprocessor=preprocessor_config(student.config.normalize_waveform),
        readme=readme,
    )
