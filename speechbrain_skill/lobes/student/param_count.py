"""Parameter counts as a function of the kept sizes of each structure.

One formula, :func:`count_params`, serves three purposes: with the config's
own sizes it is the exact count of a model; with the sizes left by a
deterministic mask it is the exact count of the materialised model; with the
*expected* sizes under the hard-concrete gates (sums of keep probabilities)
it is the differentiable expected count that the sparsity constraint uses.
It is multilinear in the sizes, so it is exact whenever they are integers.
"""

from speechbrain_skill.lobes.student.masks import config_dims


def _norm_params(config, conv_index):
    """Whether conv layer ``conv_index`` has an affine norm (2 params / channel)."""
    return config.feat_extract_norm == "layer" or conv_index == 0


def count_params(config, dims=None):
    """Number of parameters of a student with the given kept sizes.

    Every parameter tensor is covered: conv weights (in x out x kernel),
    conv biases and norms, the feature projection (LayerNorm + Linear), the
    weight-normed positional conv (v, g and bias), the encoder LayerNorm
    (post-LN), WavLM's relative-position table (all original heads), and per
    layer: per head 4 ``hidden x head_dim`` matrices, 3 ``head_dim`` biases
    (and WavLM's per-head bias-gate constant); per present attention block
    the output bias (and WavLM's bias-gate projection when a head is left);
    per FFN unit two ``hidden`` vectors and a bias; per present FFN block
    its output bias; the two LayerNorms (pre-LN: only with their block).

    Arguments
    ---------
    config : StudentConfig
        Architecture (sizes that are never pruned come from here).
    dims : StructureDims, optional
        Kept sizes (ints, floats or tensors); default: those of ``config``.

    Returns
    -------
    int, float or torch.Tensor
        A tensor (float64, differentiable) if any size is a tensor.

    Example
    -------
    >>> from speechbrain_skill.lobes.student.config import StudentConfig
    >>> config = StudentConfig.uniform("hubert", 32, 1, 4, 64, 16,
    ...                                num_conv_pos_embeddings=16,
    ...                                num_conv_pos_embedding_groups=4)
    >>> count_params(config)
    17616
    """
    if dims is None:
        dims = config_dims(config)
    hidden = config.hidden_size
    head_dim = config.head_dim
    wavlm = config.has_relative_position_bias
    pre_ln = config.do_stable_layer_norm

    total = 0
    in_channels = 1
    for index, channels in enumerate(dims.conv):
        total = total + in_channels * channels * config.conv_kernels[index]
        if config.conv_bias:
            total = total + channels
        if _norm_params(config, index):
            total = total + 2 * channels
        in_channels = channels
    if config.feat_proj_layer_norm:
        total = total + 2 * in_channels
    total = total + in_channels * hidden + hidden

    kernel = config.num_conv_pos_embeddings
    groups = config.num_conv_pos_embedding_groups
    total = total + hidden * (hidden // groups) * kernel + kernel + hidden
    if not pre_ln:
        total = total + 2 * hidden
    if wavlm:
        total = total + config.num_buckets * config.num_attention_heads

    per_head = 4 * hidden * head_dim + 3 * head_dim + (1 if wavlm else 0)
    bias_gate_projection = head_dim * 8 + 8 if wavlm else 0
    per_ffn_unit = 2 * hidden + 1
    layer_norm = 2 * hidden
    for layer in range(config.num_layers):
        attention = dims.attention[layer]
        total = total + attention * (
            dims.heads[layer] * per_head
            + hidden
            + dims.any_head[layer] * bias_gate_projection
        )
        total = total + layer_norm * (attention if pre_ln else 1)
        ffn = dims.ffn[layer]
        total = total + ffn * (dims.ffn_units[layer] * per_ffn_unit + hidden)
        total = total + layer_norm * (ffn if pre_ln else 1)
    return total


def num_params(module, include_gates=False):
    """Number of parameters of a module (gate ``log_alpha`` excluded by default).

    Arguments
    ---------
    module : torch.nn.Module
        Any module.
    include_gates : bool
        Count the hard-concrete ``log_alpha`` parameters too.

    Returns
    -------
    int

    Example
    -------
    >>> import torch
    >>> num_params(torch.nn.Linear(3, 2))
    8
    """
    return sum(
        p.numel()
        for name, p in module.named_parameters()
        if include_gates or not name.endswith("log_alpha")
    )
