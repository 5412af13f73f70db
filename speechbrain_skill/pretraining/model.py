"""The Hugging Face WavLM configuration that the pretraining recipe trains.

One function maps the recipe's top-level sizes (width, depth, heads, FFN,
conv channels) to a :class:`transformers.WavLMConfig`, so the same yaml builds
the built-in tiny teacher and, with overrides, a Base-size model
(768 / 12 layers / 12 heads / 3072 / 512 conv channels / kernel-128 positional
convolution).
"""

CONV_KERNELS = (10, 3, 3, 3, 3, 2, 2)
CONV_STRIDES = (5, 2, 2, 2, 2, 2, 2)


def wavlm_pretraining_config(
    hidden_size=768,
    num_layers=12,
    num_heads=12,
    ffn_size=3072,
    conv_channels=512,
    pos_conv_kernel=128,
    pos_conv_groups=16,
    dropout=0.1,
    attention_dropout=0.1,
    activation_dropout=0.0,
    feature_dropout=0.1,
    num_buckets=320,
    max_bucket_distance=800,
):
    """A WavLM config of the real architecture at any size, ready for masking.

    The conv front-end keeps WavLM's kernels and strides (20 ms frames);
    LayerDrop is off (see docs/design.md 4.1). ``mask_time_prob`` is set above 0 only so
    that Hugging Face creates the learned mask embedding; the recipe always
    passes its own span mask, so Hugging Face's own masking never runs.

    Arguments
    ---------
    hidden_size, num_layers, num_heads, ffn_size : int
        Transformer width, depth, attention heads, FFN width.
    conv_channels : int
        Channels of every conv layer of the front-end.
    pos_conv_kernel, pos_conv_groups : int
        Convolutional positional embedding.
    dropout, attention_dropout, activation_dropout, feature_dropout : float
        Dropout of the residual stream, attention weights, FFN activations and
        the projected CNN features.
    num_buckets, max_bucket_distance : int
        WavLM's gated relative position bias.

    Returns
    -------
    transformers.WavLMConfig

    Example
    -------
    >>> cfg = wavlm_pretraining_config(hidden_size=64, num_layers=2, num_heads=4,
    ...                                ffn_size=128, conv_channels=32)
    >>> cfg.num_hidden_layers, list(cfg.conv_dim), cfg.layerdrop
    (2, [32, 32, 32, 32, 32, 32, 32], 0.0)
    """
    from transformers import WavLMConfig

    if hidden_size % num_heads:
        raise ValueError(
            f"hidden_size ({hidden_size}) must be a multiple of num_heads "
            f"({num_heads})."
        )
    if hidden_size % pos_conv_groups:
        raise ValueError(
            f"hidden_size ({hidden_size}) must be a multiple of pos_conv_groups "
            f"({pos_conv_groups})."
        )
    return WavLMConfig(
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        intermediate_size=ffn_size,
        conv_dim=(conv_channels,) * len(CONV_KERNELS),
        conv_kernel=CONV_KERNELS,
        conv_stride=CONV_STRIDES,
        conv_bias=False,
        feat_extract_norm="group",
        num_conv_pos_embeddings=pos_conv_kernel,
        num_conv_pos_embedding_groups=pos_conv_groups,
        do_stable_layer_norm=False,
        hidden_dropout=dropout,
        attention_dropout=attention_dropout,
        activation_dropout=activation_dropout,
        feat_proj_dropout=feature_dropout,
        final_dropout=0.0,
        layerdrop=0.0,
        apply_spec_augment=True,
        mask_time_prob=0.05,
        mask_feature_prob=0.0,
        num_buckets=num_buckets,
        max_bucket_distance=max_bucket_distance,
    )
