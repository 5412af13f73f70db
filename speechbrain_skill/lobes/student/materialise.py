"""Materialisation: slice the kept units out and fold their gate values into weights.

Where a gate value ``z`` multiplies a unit's output, the value is folded into
the weights that read that output: the next conv's input channels, the
output projection's columns of a head, the FFN output columns of a unit, the
whole output projection of a gated block. This is exact, with one exception:
the last conv layer feeds the feature-projection LayerNorm, whose statistics
change when channels are removed (its kept values are kept in the
projection's ``channel_scale`` buffer instead of being folded). Conv pruning
with ``feat_extract_norm="layer"`` is inexact for the same reason at every
conv layer.
"""

import torch

from speechbrain_skill.lobes.student.masks import check_masks


def _kept_units(mask, size, device):
    """Indices and values of the kept units of a mask (None keeps all with value 1)."""
    if mask is None:
        return torch.arange(size, device=device), torch.ones(size, device=device)
    index = torch.nonzero(mask, as_tuple=False).reshape(-1)
    return index.to(device), mask[index].to(device)


def _block_value(mask):
    return 1.0 if mask is None else float(mask.reshape(-1)[0])


def pruned_config(config, masks):
    """The config of the model that ``masks`` leave, with no gates.

    Arguments
    ---------
    config : StudentConfig
        Current architecture.
    masks : dict
        Deterministic masks.

    Returns
    -------
    StudentConfig

    Example
    -------
    >>> import torch
    >>> from speechbrain_skill.lobes.student.config import StudentConfig
    >>> config = StudentConfig.uniform("hubert", 32, 1, 4, 64, 16)
    >>> masks = {"heads": [torch.tensor([0.0, 1.0, 0.0, 0.7])]}
    >>> pruned_config(config, masks).attention_heads
    [[1, 3]]
    """
    masks = check_masks(config, masks)
    conv_channels = [
        c if m is None else int((m != 0).sum())
        for c, m in zip(config.conv_channels, masks["conv"])
    ]
    if min(conv_channels) < 1:
        raise ValueError(f"A conv layer would keep no channel: {conv_channels}.")
    heads, attention_present, ffn_dims, ffn_present = [], [], [], []
    for layer in range(config.num_layers):
        present = config.attention_present[layer] and (
            _block_value(masks["attention_layer"][layer]) != 0
        )
        layer_heads = config.attention_heads[layer]
        mask = masks["heads"][layer]
        if mask is not None:
            layer_heads = [h for h, v in zip(layer_heads, mask.tolist()) if v != 0]
        heads.append(layer_heads if present else [])
        attention_present.append(present)
        present = config.ffn_present[layer] and (
            _block_value(masks["ffn_layer"][layer]) != 0
        )
        mask = masks["ffn_units"][layer]
        units = config.ffn_dims[layer] if mask is None else int((mask != 0).sum())
        ffn_dims.append(units if present else 0)
        ffn_present.append(present)
    return config.with_updates(
        conv_channels=conv_channels,
        attention_heads=heads,
        attention_present=attention_present,
        ffn_dims=ffn_dims,
        ffn_present=ffn_present,
        prune_conv=False,
        prune_heads=False,
        prune_attention_layer=False,
        prune_ffn_units=False,
        prune_ffn_layer=False,
    )


def _copy_conv(source, target, masks):
    device = source.feature_projection.projection.weight.device
    in_index = in_values = None
    for layer, new_layer, mask in zip(
        source.feature_extractor.conv_layers,
        target.feature_extractor.conv_layers,
        masks["conv"],
    ):
        out_index, out_values = _kept_units(mask, layer.conv.out_channels, device)
        weight = layer.conv.weight[out_index]
        if in_index is not None:
            weight = weight[:, in_index] * in_values.view(1, -1, 1)
        new_layer.conv.weight.copy_(weight)
        if layer.conv.bias is not None:
            new_layer.conv.bias.copy_(layer.conv.bias[out_index])
        if layer.norm is not None:
            new_layer.norm.weight.copy_(layer.norm.weight[out_index])
            new_layer.norm.bias.copy_(layer.norm.bias[out_index])
        in_index, in_values = out_index, out_values

    projection, new_projection = source.feature_projection, target.feature_projection
    weight = projection.projection.weight[:, in_index]
    if projection.layer_norm is None:
        weight = weight * in_values.view(1, -1)
    else:
        new_projection.channel_scale.copy_(
            projection.channel_scale[in_index] * in_values
        )
        new_projection.layer_norm.weight.copy_(projection.layer_norm.weight[in_index])
        new_projection.layer_norm.bias.copy_(projection.layer_norm.bias[in_index])
    new_projection.projection.weight.copy_(weight)
    new_projection.projection.bias.copy_(projection.projection.bias)


def _copy_attention(attention, new_attention, head_mask, block_value):
    if attention.num_heads == 0:
        new_attention.out_bias.copy_(attention.out_bias * block_value)
        return
    device = attention.out_proj.weight.device
    head_index, head_values = _kept_units(head_mask, attention.num_heads, device)
    if new_attention.num_heads == 0:
        new_attention.out_bias.copy_(attention.out_proj.bias * block_value)
        return
    head_dim = attention.head_dim
    rows = head_index.unsqueeze(1) * head_dim + torch.arange(head_dim, device=device)
    rows = rows.reshape(-1)
    for name in ("q_proj", "k_proj", "v_proj"):
        old, new = getattr(attention, name), getattr(new_attention, name)
        new.weight.copy_(old.weight[rows])
        new.bias.copy_(old.bias[rows])
    column_scale = head_values.repeat_interleave(head_dim) * block_value
    new_attention.out_proj.weight.copy_(
        attention.out_proj.weight[:, rows] * column_scale.view(1, -1)
    )
    new_attention.out_proj.bias.copy_(attention.out_proj.bias * block_value)
    if attention.relative_position_gate:
        new_attention.gru_rel_pos_const.copy_(attention.gru_rel_pos_const[head_index])
        new_attention.gru_rel_pos_linear.load_state_dict(
            attention.gru_rel_pos_linear.state_dict()
        )


def _copy_feed_forward(ffn, new_ffn, unit_mask, block_value):
    if ffn.ffn_dim == 0:
        new_ffn.out_bias.copy_(ffn.out_bias * block_value)
        return
    if new_ffn.ffn_dim == 0:
        new_ffn.out_bias.copy_(ffn.output_dense.bias * block_value)
        return
    device = ffn.output_dense.weight.device
    index, values = _kept_units(unit_mask, ffn.ffn_dim, device)
    new_ffn.intermediate_dense.weight.copy_(ffn.intermediate_dense.weight[index])
    new_ffn.intermediate_dense.bias.copy_(ffn.intermediate_dense.bias[index])
    new_ffn.output_dense.weight.copy_(
        ffn.output_dense.weight[:, index] * (values * block_value).view(1, -1)
    )
    new_ffn.output_dense.bias.copy_(ffn.output_dense.bias * block_value)


def _copy_layer(layer, new_layer, masks, index):
    if new_layer.attention is not None:
        _copy_attention(
            layer.attention,
            new_layer.attention,
            masks["heads"][index],
            _block_value(masks["attention_layer"][index]),
        )
    if new_layer.feed_forward is not None:
        _copy_feed_forward(
            layer.feed_forward,
            new_layer.feed_forward,
            masks["ffn_units"][index],
            _block_value(masks["ffn_layer"][index]),
        )
    for name in ("attention_layer_norm", "final_layer_norm"):
        new_norm = getattr(new_layer, name)
        if new_norm is not None:
            new_norm.load_state_dict(getattr(layer, name).state_dict())


def materialise(student, masks=None):
    """Build the physically pruned model that ``student`` computes under ``masks``.

    Arguments
    ---------
    student : PrunableSSLEncoder
        Source model (left unchanged).
    masks : dict, optional
        Deterministic masks; default: ``student.current_masks()``.

    Returns
    -------
    PrunableSSLEncoder
        A gate-free model on the same device and dtype, in eval mode. Its
        ``sum(p.numel())`` equals ``student.num_params_for_masks(masks)``.

    Example
    -------
    >>> import torch
    >>> from speechbrain_skill.lobes.student.config import StudentConfig
    >>> from speechbrain_skill.lobes.student.masks import leading_unit_masks
    >>> from speechbrain_skill.lobes.student.model import PrunableSSLEncoder
    >>> from speechbrain_skill.lobes.student.param_count import num_params
    >>> config = StudentConfig.uniform("hubert", 32, 2, 4, 64, 16)
    >>> student = PrunableSSLEncoder(config)
    >>> masks = leading_unit_masks(config, num_heads=2, ffn_dims=16)
    >>> small = materialise(student, masks)
    >>> num_params(small) == student.num_params_for_masks(masks)
    True
    """
    if masks is None:
        masks = student.current_masks()
    masks = check_masks(student.config, masks)
    config = pruned_config(student.config, masks)
    reference = next(student.parameters())
    with torch.device(reference.device):
        target = type(student)(config).to(dtype=reference.dtype)
    with torch.no_grad():
        _copy_conv(student, target, masks)
        target.encoder.pos_conv_embed.load_state_dict(
            student.encoder.pos_conv_embed.state_dict()
        )
        for name in ("layer_norm", "relative_position"):
            module = getattr(target.encoder, name)
            if module is not None:
                module.load_state_dict(getattr(student.encoder, name).state_dict())
        for index, (layer, new_layer) in enumerate(
            zip(student.encoder.layers, target.encoder.layers)
        ):
            _copy_layer(layer, new_layer, masks, index)
    return target.eval()
