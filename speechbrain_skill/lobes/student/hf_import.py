"""Import of Hugging Face WavLM / HuBERT / wav2vec 2.0 model weights."""

import torch

from speechbrain_skill.lobes.hf_ssl import load_hf_ssl_model, waveform_normalization
from speechbrain_skill.lobes.student.config import StudentConfig


class UnsupportedTeacherError(ValueError):
    """Raised for Hugging Face options the student does not implement."""


def _check_supported(hf_config):
    if getattr(hf_config, "conv_pos_batch_norm", False):
        raise UnsupportedTeacherError("conv_pos_batch_norm=True is not supported.")
    if getattr(hf_config, "add_adapter", False):
        raise UnsupportedTeacherError(
            "Models with an output adapter are not supported."
        )
    if getattr(hf_config, "adapter_attn_dim", None) is not None:
        raise UnsupportedTeacherError("Attention adapters are not supported.")


def student_config_from_hf(
    hf_config, num_layers=None, normalize_waveform=False, **fields
):
    """Translate a Hugging Face SSL config into an unpruned :class:`StudentConfig`.

    Arguments
    ---------
    hf_config : transformers.PretrainedConfig
        A WavLM, HuBERT or wav2vec 2.0 config.
    num_layers : int, optional
        Keep only the first transformer layers.
    normalize_waveform : bool
        Waveform normalisation of the student.
    **fields
        Other :class:`StudentConfig` fields (prune flags, dropout overrides...).

    Returns
    -------
    StudentConfig

    Example
    -------
    >>> from transformers import WavLMConfig
    >>> config = student_config_from_hf(WavLMConfig(), num_layers=2)
    >>> config.num_layers, config.ffn_dims, config.conv_channels[0]
    (2, [3072, 3072], 512)
    """
    _check_supported(hf_config)
    total_layers = hf_config.num_hidden_layers
    if num_layers is None:
        num_layers = total_layers
    if not 1 <= num_layers <= total_layers:
        raise ValueError(
            f"num_layers must be in [1, {total_layers}], got {num_layers}."
        )
    heads = hf_config.num_attention_heads
    settings = dict(
        model_type=hf_config.model_type,
        hidden_size=hf_config.hidden_size,
        num_attention_heads=heads,
        conv_channels=list(hf_config.conv_dim),
        conv_kernels=list(hf_config.conv_kernel),
        conv_strides=list(hf_config.conv_stride),
        attention_heads=[list(range(heads)) for _ in range(num_layers)],
        attention_present=[True] * num_layers,
        ffn_dims=[hf_config.intermediate_size] * num_layers,
        ffn_present=[True] * num_layers,
        conv_bias=bool(hf_config.conv_bias),
        feat_extract_norm=hf_config.feat_extract_norm,
        feat_extract_activation=hf_config.feat_extract_activation,
        hidden_act=hf_config.hidden_act,
        feat_proj_layer_norm=bool(getattr(hf_config, "feat_proj_layer_norm", True)),
        num_conv_pos_embeddings=hf_config.num_conv_pos_embeddings,
        num_conv_pos_embedding_groups=hf_config.num_conv_pos_embedding_groups,
        do_stable_layer_norm=bool(hf_config.do_stable_layer_norm),
        layer_norm_eps=hf_config.layer_norm_eps,
        hidden_dropout=hf_config.hidden_dropout,
        attention_dropout=hf_config.attention_dropout,
        activation_dropout=hf_config.activation_dropout,
        feat_proj_dropout=hf_config.feat_proj_dropout,
        normalize_waveform=bool(normalize_waveform),
    )
    if hf_config.model_type == "wavlm":
        settings.update(
            num_buckets=hf_config.num_buckets,
            max_bucket_distance=hf_config.max_bucket_distance,
        )
    settings.update(fields)
    return StudentConfig(**settings)


def _weight_norm_tensors(conv):
    """(g, v) of a weight-normed conv, for both the parametrization and legacy hooks."""
    if hasattr(conv, "parametrizations"):
        return (
            conv.parametrizations.weight.original0,
            conv.parametrizations.weight.original1,
        )
    return conv.weight_g, conv.weight_v


def _copy_linear(target, source):
    target.weight.copy_(source.weight)
    if target.bias is not None:
        target.bias.copy_(source.bias)


def import_hf_weights(student, hf_model):
    """Copy an unpruned Hugging Face model's weights into an unpruned student.

    Arguments
    ---------
    student : PrunableSSLEncoder
        Built from :func:`student_config_from_hf` of the same config (gates
        are left as initialised).
    hf_model : transformers.PreTrainedModel
        WavLM, HuBERT or wav2vec 2.0 base model.

    Example
    -------
    >>> from speechbrain_skill.lobes.tiny_models import tiny_config
    >>> from speechbrain_skill.lobes.student.model import PrunableSSLEncoder
    >>> from transformers import HubertModel
    >>> hf_model = HubertModel(tiny_config("hubert"))
    >>> student = PrunableSSLEncoder(student_config_from_hf(hf_model.config))
    >>> import_hf_weights(student, hf_model)
    >>> bool((student.feature_projection.projection.weight
    ...       == hf_model.feature_projection.projection.weight).all())
    True
    """
    with torch.no_grad():
        for layer, hf_layer in zip(
            student.feature_extractor.conv_layers,
            hf_model.feature_extractor.conv_layers,
        ):
            _copy_linear(layer.conv, hf_layer.conv)
            if layer.norm is not None:
                _copy_linear(layer.norm, hf_layer.layer_norm)
        projection, hf_projection = (
            student.feature_projection,
            hf_model.feature_projection,
        )
        if projection.layer_norm is not None:
            _copy_linear(projection.layer_norm, hf_projection.layer_norm)
        _copy_linear(projection.projection, hf_projection.projection)

        encoder, hf_encoder = student.encoder, hf_model.encoder
        pos_conv, hf_pos_conv = (
            encoder.pos_conv_embed.conv,
            hf_encoder.pos_conv_embed.conv,
        )
        gain, direction = _weight_norm_tensors(pos_conv)
        hf_gain, hf_direction = _weight_norm_tensors(hf_pos_conv)
        gain.copy_(hf_gain)
        direction.copy_(hf_direction)
        pos_conv.bias.copy_(hf_pos_conv.bias)
        if encoder.layer_norm is not None:
            _copy_linear(encoder.layer_norm, hf_encoder.layer_norm)
        if encoder.relative_position is not None:
            encoder.relative_position.rel_attn_embed.weight.copy_(
                hf_encoder.layers[0].attention.rel_attn_embed.weight
            )
        for layer, hf_layer in zip(encoder.layers, hf_encoder.layers):
            attention, hf_attention = layer.attention, hf_layer.attention
            for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
                _copy_linear(getattr(attention, name), getattr(hf_attention, name))
            if attention.relative_position_gate:
                attention.gru_rel_pos_const.copy_(
                    hf_attention.gru_rel_pos_const.reshape(-1)
                )
                _copy_linear(
                    attention.gru_rel_pos_linear, hf_attention.gru_rel_pos_linear
                )
            _copy_linear(layer.attention_layer_norm, hf_layer.layer_norm)
            ffn, hf_ffn = layer.feed_forward, hf_layer.feed_forward
            _copy_linear(ffn.intermediate_dense, hf_ffn.intermediate_dense)
            _copy_linear(ffn.output_dense, hf_ffn.output_dense)
            _copy_linear(layer.final_layer_norm, hf_layer.final_layer_norm)


def student_from_hf(
    cls,
    source,
    num_layers=None,
    normalize_waveform=None,
    **fields,
):
    """Load a Hugging Face model and turn it into a student of class ``cls``.

    See :meth:`PrunableSSLEncoder.from_hf` for the arguments.

    Arguments
    ---------
    cls : type
        The student class.
    source : str, os.PathLike or transformers.PreTrainedModel
        What :func:`load_hf_ssl_model` accepts.
    num_layers : int, optional
        Keep only the first transformer layers.
    normalize_waveform : bool, optional
        Default: the source's feature-extractor setting.
    **fields
        Prune flags and other :class:`StudentConfig` fields.

    Returns
    -------
    PrunableSSLEncoder

    Example
    -------
    >>> from speechbrain_skill.lobes.tiny_models import tiny_config
    >>> from speechbrain_skill.lobes.student.model import PrunableSSLEncoder
    >>> from transformers import Wav2Vec2Model
    >>> hf_model = Wav2Vec2Model(tiny_config("wav2vec2"))
    >>> student = student_from_hf(PrunableSSLEncoder, hf_model)
    >>> student.config.model_type, student.training
    ('wav2vec2', False)
    """
    hf_model = load_hf_ssl_model(source)
    if normalize_waveform is None:
        normalize_waveform = (
            False
            if isinstance(source, torch.nn.Module)
            else waveform_normalization(source)
        )
    config = student_config_from_hf(
        hf_model.config,
        num_layers=num_layers,
        normalize_waveform=normalize_waveform,
        **fields,
    )
    student = cls(config)
    import_hf_weights(student, hf_model)
    reference = next(hf_model.parameters())
    return student.to(device=reference.device, dtype=reference.dtype).eval()
