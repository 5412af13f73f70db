"""Tiny randomly initialised SSL models of the real architectures.

For examples, tests and docs: :func:`save_tiny_model` writes a folder
like a hub checkpoint, which loads with
:func:`~speechbrain_skill.lobes.hf_ssl.load_hf_ssl_model`.
"""

from speechbrain_skill.export.folder import (
    hf_model_config,
    preprocessor_config,
    write_model_folder,
)
from speechbrain_skill.lobes.hf_ssl import (
    SUPPORTED_MODEL_TYPES,
    TeacherLoadError,
    _config_classes,
    random_ssl_model,
)


def tiny_config(model_type="wavlm", **overrides):
    """Build a small config of the real architecture (same conv strides: 20 ms frames).

    Arguments
    ---------
    model_type : str
        One of ``wavlm``, ``hubert``, ``wav2vec2``.
    **overrides
        Any config field, e.g. ``num_hidden_layers=2``.

    Returns
    -------
    transformers.PretrainedConfig

    Example
    -------
    >>> cfg = tiny_config("wav2vec2", num_hidden_layers=2)
    >>> cfg.num_hidden_layers, cfg.hidden_size, list(cfg.conv_stride)
    (2, 32, [5, 2, 2, 2, 2, 2, 2])
    """
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise TeacherLoadError(
            f"Unknown model type '{model_type}'; "
            f"expected one of {SUPPORTED_MODEL_TYPES}."
        )
    settings = dict(
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=64,
        conv_dim=(16, 16, 16, 16, 16, 16, 16),
        conv_kernel=(10, 3, 3, 3, 3, 2, 2),
        conv_stride=(5, 2, 2, 2, 2, 2, 2),
        conv_bias=False,
        feat_extract_norm="group",
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
        do_stable_layer_norm=False,
        layerdrop=0.0,
        hidden_dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        feat_proj_dropout=0.0,
        final_dropout=0.0,
        mask_time_prob=0.0,
        mask_feature_prob=0.0,
        vocab_size=32,
    )
    if model_type == "wavlm":
        settings.update(num_buckets=320, max_bucket_distance=800)
    settings.update(overrides)
    return _config_classes()[model_type](**settings)


def save_tiny_model(path, model_type="wavlm", seed=0, **overrides):
    """Create a randomly initialised tiny SSL model and ``save_pretrained`` it.

    The folder has ``config.json``, the weights and ``preprocessor_config.json``,
    exactly like a hub checkpoint, so it loads with :func:`load_hf_ssl_model`.

    Arguments
    ---------
    path : str or os.PathLike
        Output directory (created).
    model_type : str
        ``wavlm``, ``hubert`` or ``wav2vec2``.
    seed : int
        Seed of the random initialisation.
    **overrides
        Config fields passed to :func:`tiny_config`.

    Returns
    -------
    str
        The directory.

    Example
    -------
    >>> import tempfile, os
    >>> path = save_tiny_model(tempfile.mkdtemp(), "wavlm")
    >>> sorted(f for f in os.listdir(path) if f.endswith(".json"))
    ['config.json', 'preprocessor_config.json']
    """
    model = random_ssl_model(tiny_config(model_type, **overrides), seed)
    return write_model_folder(
        path, hf_model_config(model), model.state_dict(), preprocessor_config()
    )
