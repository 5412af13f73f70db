"""Student export as a Hugging Face model (HubertModel, WavLMModel, Wav2Vec2Model).

A student fits the Hugging Face architecture when every layer has all its
attention heads, an attention and an FFN block, and the same FFN width; conv
channels may differ per conv layer (``conv_dim`` is per layer there too). A
DistilHuBERT student (the teacher's first layers, unpruned) always fits; a
structurally pruned SKILL / DPHuBERT student usually does not, and keeps its
own format (:func:`speechbrain_skill.lobes.student.save_student`).

The directory holds ``config.json``, the weights and ``preprocessor_config.json``,
so ``transformers`` (``AutoModel.from_pretrained``) and SpeechBrain's
Hugging Face lobes (``speechbrain.integrations.huggingface.HuBERT`` / ``WavLM``)
load it directly. The distillation heads are not part of it.
"""

import logging
import os

import torch

from speechbrain_skill.lobes.hf_ssl import SAMPLE_RATE
from speechbrain_skill.lobes.student.hf_import import _weight_norm_tensors
from speechbrain_skill.training.modules import unwrap

logger = logging.getLogger(__name__)

# Parameters of the Hugging Face model that the student does not have. The
# masked-frame embedding is only used by SpecAugment-style masking in
# fine-tuning; it keeps the Hugging Face initialisation.
HF_ONLY_PARAMETERS = ("masked_spec_embed",)


def hf_export_problems(student):
    """Why a student cannot be written as a Hugging Face model (empty if it can).

    Arguments
    ---------
    student : PrunableSSLStudent
        The student (a DDP wrapper is unwrapped).

    Returns
    -------
    list of str

    Example
    -------
    >>> from speechbrain_skill.lobes.student import PrunableSSLStudent, StudentConfig
    >>> config = StudentConfig.uniform("hubert", 32, 2, 4, 64, 16)
    >>> hf_export_problems(PrunableSSLStudent(config))
    []
    >>> pruned = config.with_updates(ffn_dims=[64, 40])
    >>> hf_export_problems(PrunableSSLStudent(pruned))
    ['FFN widths differ between layers: [64, 40]']
    """
    student = unwrap(student)
    config = student.config
    problems = []
    if config.prunable_structures:
        problems.append(
            f"the student still has gates ({', '.join(config.prunable_structures)}); "
            "materialise it with prune() first"
        )
    all_heads = list(range(config.num_attention_heads))
    if any(heads != all_heads for heads in config.attention_heads):
        problems.append("some layers lost attention heads")
    if not all(config.attention_present) or not all(config.ffn_present):
        problems.append("some layers lost their attention or FFN block")
    if len(set(config.ffn_dims)) > 1:
        problems.append(f"FFN widths differ between layers: {config.ffn_dims}")
    if config.do_stable_layer_norm:
        problems.append("pre-LN (stable layer norm) students are not exported")
    if not config.feat_proj_layer_norm and config.model_type != "hubert":
        problems.append(
            f"{config.model_type} always has the feature-projection LayerNorm"
        )
    scale = getattr(student.feature_projection, "channel_scale", None)
    if scale is not None and not torch.all(scale == 1):
        problems.append(
            "the last conv layer was materialised with soft gate values "
            "(channel_scale), which Hugging Face models cannot hold"
        )
    return problems


def hf_config(student_config):
    """The Hugging Face config of an exportable student's config.

    Arguments
    ---------
    student_config : StudentConfig
        Config of a student that passes :func:`hf_export_problems`.

    Returns
    -------
    transformers.PretrainedConfig

    Example
    -------
    >>> from speechbrain_skill.lobes.student import StudentConfig
    >>> config = hf_config(StudentConfig.uniform("wavlm", 32, 2, 4, 64, 16))
    >>> type(config).__name__, config.num_hidden_layers, config.conv_dim[0]
    ('WavLMConfig', 2, 16)
    """
    from transformers import HubertConfig, Wav2Vec2Config, WavLMConfig

    c = student_config
    settings = dict(
        hidden_size=c.hidden_size,
        num_hidden_layers=c.num_layers,
        num_attention_heads=c.num_attention_heads,
        intermediate_size=c.ffn_dims[0] if c.ffn_dims else 0,
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
        return WavLMConfig(**settings)
    if c.model_type == "hubert":
        return HubertConfig(feat_proj_layer_norm=c.feat_proj_layer_norm, **settings)
    return Wav2Vec2Config(**settings)


def _linear_pairs(hf_module, module):
    yield hf_module.weight, module.weight
    if module.bias is not None:
        yield hf_module.bias, module.bias


def _tensor_pairs(hf_model, student):
    """(Hugging Face tensor, student tensor) for every weight of the student."""
    for hf_layer, layer in zip(
        hf_model.feature_extractor.conv_layers, student.feature_extractor.conv_layers
    ):
        yield from _linear_pairs(hf_layer.conv, layer.conv)
        if layer.norm is not None:
            yield from _linear_pairs(hf_layer.layer_norm, layer.norm)
    hf_projection, projection = hf_model.feature_projection, student.feature_projection
    if projection.layer_norm is not None:
        yield from _linear_pairs(hf_projection.layer_norm, projection.layer_norm)
    yield from _linear_pairs(hf_projection.projection, projection.projection)
    hf_encoder, encoder = hf_model.encoder, student.encoder
    hf_conv, conv = hf_encoder.pos_conv_embed.conv, encoder.pos_conv_embed.conv
    yield from zip(_weight_norm_tensors(hf_conv), _weight_norm_tensors(conv))
    yield hf_conv.bias, conv.bias
    yield from _linear_pairs(hf_encoder.layer_norm, encoder.layer_norm)
    if encoder.relative_position is not None:
        yield (
            hf_encoder.layers[0].attention.rel_attn_embed.weight,
            encoder.relative_position.rel_attn_embed.weight,
        )
    for hf_layer, layer in zip(hf_encoder.layers, encoder.layers):
        hf_attention, attention = hf_layer.attention, layer.attention
        for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
            yield from _linear_pairs(
                getattr(hf_attention, name), getattr(attention, name)
            )
        if attention.relative_position_gate:
            yield hf_attention.gru_rel_pos_const, attention.gru_rel_pos_const
            yield from _linear_pairs(
                hf_attention.gru_rel_pos_linear, attention.gru_rel_pos_linear
            )
        yield from _linear_pairs(hf_layer.layer_norm, layer.attention_layer_norm)
        hf_ffn, ffn = hf_layer.feed_forward, layer.feed_forward
        yield from _linear_pairs(hf_ffn.intermediate_dense, ffn.intermediate_dense)
        yield from _linear_pairs(hf_ffn.output_dense, ffn.output_dense)
        yield from _linear_pairs(hf_layer.final_layer_norm, layer.final_layer_norm)


def student_to_hf(student):
    """Build the Hugging Face model holding a student's weights (eval mode, CPU).

    Arguments
    ---------
    student : PrunableSSLStudent
        A student that passes :func:`hf_export_problems`.

    Returns
    -------
    transformers.PreTrainedModel

    Example
    -------
    >>> from speechbrain_skill.lobes.student import PrunableSSLStudent, StudentConfig
    >>> config = StudentConfig.uniform("hubert", 32, 2, 4, 64, 16,
    ...     num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4)
    >>> student = PrunableSSLStudent(config).eval()
    >>> wavs = torch.randn(1, 16000)
    >>> hf = student_to_hf(student)(wavs, output_hidden_states=True).hidden_states
    >>> torch.allclose(torch.stack(hf), student(wavs)[0], atol=1e-5)
    True
    """
    from speechbrain_skill.lobes.hf_ssl import _model_classes

    student = unwrap(student)
    problems = hf_export_problems(student)
    if problems:
        raise ValueError(
            "The student does not fit the Hugging Face architecture: "
            + "; ".join(problems)
            + "."
        )
    config = hf_config(student.config)
    hf_model = _model_classes()[config.model_type](config).eval()
    written = set()
    with torch.no_grad():
        for hf_tensor, tensor in _tensor_pairs(hf_model, student):
            hf_tensor.copy_(tensor.detach().reshape(hf_tensor.shape).cpu())
            written.add(id(hf_tensor))
    missing = [
        name
        for name, param in hf_model.named_parameters()
        if id(param) not in written and name not in HF_ONLY_PARAMETERS
    ]
    if missing:
        raise RuntimeError(f"Hugging Face parameters left unset: {missing}.")
    return hf_model


def save_hf_model(student, directory):
    """Write a student as a Hugging Face model directory.

    Arguments
    ---------
    student : PrunableSSLStudent
        A student that passes :func:`hf_export_problems`.
    directory : str or os.PathLike
        Output directory (created).

    Returns
    -------
    str
        The directory.

    Example
    -------
    >>> import tempfile
    >>> from transformers import AutoModel
    >>> from speechbrain_skill.lobes.student import PrunableSSLStudent, StudentConfig
    >>> student = PrunableSSLStudent(StudentConfig.uniform("wavlm", 32, 2, 4, 64, 16))
    >>> path = save_hf_model(student, tempfile.mkdtemp())
    >>> type(AutoModel.from_pretrained(path)).__name__
    'WavLMModel'
    """
    from transformers import Wav2Vec2FeatureExtractor

    student = unwrap(student)
    hf_model = student_to_hf(student)
    os.makedirs(directory, exist_ok=True)
    hf_model.save_pretrained(directory)
    Wav2Vec2FeatureExtractor(
        feature_size=1,
        sampling_rate=SAMPLE_RATE,
        padding_value=0.0,
        do_normalize=student.config.normalize_waveform,
        # Hugging Face's convention: group-norm (Base) models get no padding mask.
        return_attention_mask=student.config.feat_extract_norm == "layer",
    ).save_pretrained(directory)
    return str(directory)


def export_hf_if_possible(student, directory):
    """Write the Hugging Face export when the student fits; otherwise log why not.

    This is the pipeline's ``hf_export`` step: DistilHuBERT students are
    exported, pruned students are skipped with the reasons logged.

    Arguments
    ---------
    student : PrunableSSLStudent
        The final student.
    directory : str or os.PathLike
        Output directory.

    Returns
    -------
    str or None
        The directory, or None when the student does not fit.

    Example
    -------
    >>> import tempfile
    >>> from speechbrain_skill.lobes.student import PrunableSSLStudent, StudentConfig
    >>> config = StudentConfig.uniform("hubert", 32, 2, 4, 64, 16)
    >>> pruned = PrunableSSLStudent(config.with_updates(attention_heads=[[0], [0, 1]]))
    >>> export_hf_if_possible(pruned, tempfile.mkdtemp()) is None
    True
    """
    problems = hf_export_problems(student)
    if problems:
        logger.info("No Hugging Face export: %s.", "; ".join(problems))
        return None
    return save_hf_model(student, directory)
