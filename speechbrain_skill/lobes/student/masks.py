"""Deterministic structure masks and the kept sizes they imply.

A *masks* dictionary has one key per structure of :data:`STRUCTURES`:

- ``conv``: one entry per conv layer, a vector over its output channels;
- ``heads``: one entry per transformer layer, a vector over the heads the
  layer has (in the order of ``config.attention_heads[layer]``);
- ``attention_layer`` / ``ffn_layer``: per layer, a 1-element vector;
- ``ffn_units``: per layer, a vector over its FFN units.

An entry is a tensor of gate values (0 = pruned; the non-zero value scales
the unit and is folded into the weights at materialisation) or None (the
structure is kept whole, value 1). Entries of absent blocks are ignored.
"""

from dataclasses import dataclass
from typing import List

import torch

from speechbrain_skill.lobes.student.config import STRUCTURES


@dataclass
class StructureDims:
    """Kept sizes of every prunable structure: ints, floats or 0-dim tensors.

    ``any_head`` is 1 when a present attention block keeps at least one head
    (the WavLM bias-gate projection exists only then); ``attention`` and
    ``ffn`` are the block presence values.

    Example
    -------
    >>> StructureDims([4], [2], [1], [1], [8], [1]).heads
    [2]
    """

    conv: List
    heads: List
    any_head: List
    attention: List
    ffn_units: List
    ffn: List


def config_dims(config):
    """The kept sizes of a config as it stands (nothing further pruned).

    Arguments
    ---------
    config : StudentConfig
        Architecture.

    Returns
    -------
    StructureDims

    Example
    -------
    >>> from speechbrain_skill.lobes.student.config import StudentConfig
    >>> config_dims(StudentConfig.uniform("hubert", 32, 1, 4, 64, 16)).ffn_units
    [64]
    """
    present = config.attention_present
    return StructureDims(
        conv=list(config.conv_channels),
        heads=[len(h) if p else 0 for h, p in zip(config.attention_heads, present)],
        any_head=[
            int(p and len(h) > 0) for h, p in zip(config.attention_heads, present)
        ],
        attention=[int(p) for p in present],
        ffn_units=[d if p else 0 for d, p in zip(config.ffn_dims, config.ffn_present)],
        ffn=[int(p) for p in config.ffn_present],
    )


def empty_masks(config):
    """Masks that prune nothing (every entry None).

    Arguments
    ---------
    config : StudentConfig
        Architecture.

    Returns
    -------
    dict

    Example
    -------
    >>> from speechbrain_skill.lobes.student.config import StudentConfig
    >>> masks = empty_masks(StudentConfig.uniform("hubert", 32, 2, 4, 64, 16))
    >>> len(masks["conv"]), masks["heads"]
    (7, [None, None])
    """
    return {
        name: [None] * (config.num_conv_layers if name == "conv" else config.num_layers)
        for name in STRUCTURES
    }


def _expected_size(config, name, index):
    if name == "conv":
        return config.conv_channels[index]
    if name == "heads":
        return len(config.attention_heads[index])
    if name == "ffn_units":
        return config.ffn_dims[index]
    return 1


def check_masks(config, masks):
    """Validate a masks dictionary against a config; fill missing keys with None.

    Arguments
    ---------
    config : StudentConfig
        Architecture.
    masks : dict
        See the module docstring.

    Returns
    -------
    dict
        A complete masks dictionary.

    Example
    -------
    >>> from speechbrain_skill.lobes.student.config import StudentConfig
    >>> config = StudentConfig.uniform("hubert", 32, 1, 4, 64, 16)
    >>> check_masks(config, {"heads": [torch.ones(4)]})["ffn_units"]
    [None]
    """
    unknown = sorted(set(masks) - set(STRUCTURES))
    if unknown:
        raise ValueError(f"Unknown mask structures {unknown}; expected {STRUCTURES}.")
    full = empty_masks(config)
    for name, entries in masks.items():
        expected = len(full[name])
        if len(entries) != expected:
            raise ValueError(
                f"Masks '{name}' has {len(entries)} entries, expected {expected}."
            )
        for index, mask in enumerate(entries):
            if mask is None:
                continue
            mask = torch.as_tensor(mask).detach().reshape(-1)
            size = _expected_size(config, name, index)
            if mask.numel() != size:
                raise ValueError(
                    f"Mask {name}[{index}] has {mask.numel()} values, expected {size}."
                )
            full[name][index] = mask
    return full


def _kept_count(mask, default):
    return default if mask is None else int((mask != 0).sum())


def mask_dims(config, masks):
    """Kept sizes after applying deterministic masks to a config.

    Arguments
    ---------
    config : StudentConfig
        Architecture.
    masks : dict
        See the module docstring.

    Returns
    -------
    StructureDims

    Example
    -------
    >>> from speechbrain_skill.lobes.student.config import StudentConfig
    >>> config = StudentConfig.uniform("hubert", 32, 1, 4, 64, 16)
    >>> mask_dims(config, {"heads": [torch.tensor([1.0, 0, 0, 0.5])]}).heads
    [2]
    """
    masks = check_masks(config, masks)
    base = config_dims(config)
    dims = StructureDims(
        conv=[_kept_count(m, c) for m, c in zip(masks["conv"], base.conv)],
        heads=[],
        any_head=[],
        attention=[],
        ffn_units=[],
        ffn=[],
    )
    for layer in range(config.num_layers):
        attention = base.attention[layer] * _kept_count(
            masks["attention_layer"][layer], 1
        )
        heads = attention * _kept_count(masks["heads"][layer], base.heads[layer])
        dims.attention.append(attention)
        dims.heads.append(heads)
        dims.any_head.append(int(heads > 0))
        ffn = base.ffn[layer] * _kept_count(masks["ffn_layer"][layer], 1)
        dims.ffn.append(ffn)
        dims.ffn_units.append(
            ffn * _kept_count(masks["ffn_units"][layer], base.ffn_units[layer])
        )
    return dims


def leading_unit_masks(config, conv_channels=None, num_heads=None, ffn_dims=None):
    """Masks that keep the first units of each structure with value 1.

    Handy to materialise a model of chosen dims (benchmarks, tests).

    Arguments
    ---------
    config : StudentConfig
        Architecture.
    conv_channels : int or list of int, optional
        Channels kept per conv layer.
    num_heads : int or list of int, optional
        Heads kept per layer.
    ffn_dims : int or list of int, optional
        FFN units kept per layer.

    Returns
    -------
    dict

    Example
    -------
    >>> from speechbrain_skill.lobes.student.config import StudentConfig
    >>> config = StudentConfig.uniform("hubert", 32, 2, 4, 64, 16)
    >>> leading_unit_masks(config, num_heads=1)["heads"][0].tolist()
    [1.0, 0.0, 0.0, 0.0]
    """

    def per_layer(value, count):
        """One value per layer (an int is repeated)."""
        return [value] * count if isinstance(value, int) else list(value)

    def leading(size, kept):
        """A 0/1 mask whose first ``kept`` entries are 1."""
        mask = torch.zeros(size)
        mask[: min(kept, size)] = 1.0
        return mask

    masks = empty_masks(config)
    if conv_channels is not None:
        kept = per_layer(conv_channels, config.num_conv_layers)
        masks["conv"] = [leading(c, k) for c, k in zip(config.conv_channels, kept)]
    if num_heads is not None:
        kept = per_layer(num_heads, config.num_layers)
        masks["heads"] = [
            leading(len(h), k) for h, k in zip(config.attention_heads, kept)
        ]
    if ffn_dims is not None:
        kept = per_layer(ffn_dims, config.num_layers)
        masks["ffn_units"] = [leading(d, k) for d, k in zip(config.ffn_dims, kept)]
    return masks
