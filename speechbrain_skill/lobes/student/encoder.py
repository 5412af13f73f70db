"""Transformer part of the student: positional conv, layers with optional blocks."""

import torch
import torch.nn.functional as F

from speechbrain_skill.lobes.student.activations import get_activation
from speechbrain_skill.lobes.student.attention import (
    RelativePositionBias,
    SelfAttention,
)
from speechbrain_skill.lobes.student.hard_concrete import HardConcreteGate


class FeedForward(torch.nn.Module):
    """Linear -> activation -> optional unit gate -> Linear.

    With zero units the block outputs its output bias.

    Arguments
    ---------
    hidden_size, ffn_dim : int
        Widths.
    activation : str
        Activation name.
    activation_dropout, dropout : float
        Dropout on the intermediate units and on the output.
    gate_drop_rate : float, optional
        Initial drop rate of a unit gate; None means no gate.

    Example
    -------
    >>> FeedForward(32, 64, "gelu", 0.0, 0.0)(torch.randn(2, 5, 32)).shape
    torch.Size([2, 5, 32])
    """

    def __init__(
        self,
        hidden_size,
        ffn_dim,
        activation,
        activation_dropout,
        dropout,
        gate_drop_rate=None,
    ):
        super().__init__()
        self.ffn_dim = ffn_dim
        self.unit_gate = None
        self.dropout = torch.nn.Dropout(dropout)
        if ffn_dim == 0:
            self.out_bias = torch.nn.Parameter(torch.zeros(hidden_size))
            return
        self.intermediate_dense = torch.nn.Linear(hidden_size, ffn_dim)
        self.activation = get_activation(activation)
        self.intermediate_dropout = torch.nn.Dropout(activation_dropout)
        self.output_dense = torch.nn.Linear(ffn_dim, hidden_size)
        if gate_drop_rate is not None:
            self.unit_gate = HardConcreteGate(ffn_dim, init_drop_rate=gate_drop_rate)

    def forward(self, x):
        """Apply the block to (batch, frames, hidden).

        Units whose gate value is exactly 0 are skipped (see
        :mod:`~speechbrain_skill.lobes.student.active_units`).
        """
        if self.ffn_dim == 0:
            return self.out_bias.expand_as(x)
        if self.unit_gate is None:
            hidden = self.activation(self.intermediate_dense(x))
            return self.dropout(self.output_dense(self.intermediate_dropout(hidden)))
        gate, kept = self.unit_gate.value_and_units()
        if kept is None:
            hidden = self.activation(self.intermediate_dense(x))
            hidden = self.intermediate_dropout(hidden) * gate.to(hidden.dtype)
            return self.dropout(self.output_dense(hidden))
        inner, outer = self.intermediate_dense, self.output_dense
        hidden = F.linear(
            x, inner.weight.index_select(0, kept), inner.bias.index_select(0, kept)
        )
        hidden = self.intermediate_dropout(self.activation(hidden))
        hidden = hidden * gate.index_select(0, kept).to(hidden.dtype)
        return self.dropout(
            F.linear(hidden, outer.weight.index_select(1, kept), outer.bias)
        )


class EncoderLayer(torch.nn.Module):
    """One transformer layer whose attention and FFN blocks may be absent.

    Post-LN (Base): ``x = LN1(x + attn(x)); x = LN2(x + ffn(x))``; both
    LayerNorms stay when a block is removed. Pre-LN (``do_stable_layer_norm``):
    ``x = x + attn(LN1(x)); x = x + ffn(LN2(x))``; a removed block takes its
    LayerNorm with it. Optional block gates scale a whole block's output.

    Arguments
    ---------
    config : StudentConfig
        Architecture.
    index : int
        Layer index in ``config``.

    Example
    -------
    >>> from speechbrain_skill.lobes.student.config import StudentConfig
    >>> config = StudentConfig.uniform("hubert", 32, 2, 4, 64, 16)
    >>> EncoderLayer(config, 0)(torch.randn(2, 5, 32)).shape
    torch.Size([2, 5, 32])
    """

    def __init__(self, config, index):
        super().__init__()
        hidden = config.hidden_size
        self.pre_layer_norm = config.do_stable_layer_norm
        self.attention = None
        self.attention_layer_norm = None
        self.attention_gate = None
        self.feed_forward = None
        self.final_layer_norm = None
        self.ffn_gate = None
        self.dropout = torch.nn.Dropout(config.hidden_dropout)
        block_rate = config.gate_init_drop_rate
        if config.attention_present[index]:
            self.attention = SelfAttention(
                hidden,
                config.head_dim,
                config.attention_heads[index],
                config.attention_dropout,
                relative_position_gate=config.has_relative_position_bias,
                gate_drop_rate=block_rate if config.prune_heads else None,
            )
            if config.prune_attention_layer:
                self.attention_gate = HardConcreteGate(1, init_drop_rate=block_rate)
        if config.attention_present[index] or not self.pre_layer_norm:
            self.attention_layer_norm = torch.nn.LayerNorm(
                hidden, eps=config.layer_norm_eps
            )
        if config.ffn_present[index]:
            self.feed_forward = FeedForward(
                hidden,
                config.ffn_dims[index],
                config.hidden_act,
                config.activation_dropout,
                config.hidden_dropout,
                gate_drop_rate=(
                    config.ffn_unit_gate_init_drop_rate
                    if config.prune_ffn_units
                    else None
                ),
            )
            if config.prune_ffn_layer:
                self.ffn_gate = HardConcreteGate(1, init_drop_rate=block_rate)
        if config.ffn_present[index] or not self.pre_layer_norm:
            self.final_layer_norm = torch.nn.LayerNorm(
                hidden, eps=config.layer_norm_eps
            )

    def _attend(self, x, padding_bias, position_bias):
        out = self.dropout(self.attention(x, padding_bias, position_bias))
        if self.attention_gate is not None:
            out = out * self.attention_gate().to(out.dtype)
        return out

    def _feed_forward(self, x):
        out = self.feed_forward(x)
        if self.ffn_gate is not None:
            out = out * self.ffn_gate().to(out.dtype)
        return out

    def forward(self, x, padding_bias=None, position_bias=None):
        """Apply the layer.

        Arguments
        ---------
        x : torch.Tensor
            (batch, frames, hidden).
        padding_bias : torch.Tensor, optional
            Additive key mask (batch, 1, 1, frames).
        position_bias : torch.Tensor, optional
            WavLM shared bias (heads, frames, frames).

        Returns
        -------
        torch.Tensor
        """
        if self.pre_layer_norm:
            if self.attention is not None:
                x = x + self._attend(
                    self.attention_layer_norm(x), padding_bias, position_bias
                )
            if self.feed_forward is not None:
                x = x + self._feed_forward(self.final_layer_norm(x))
            return x
        if self.attention is not None:
            x = x + self._attend(x, padding_bias, position_bias)
        x = self.attention_layer_norm(x)
        if self.feed_forward is not None:
            x = x + self._feed_forward(x)
        return self.final_layer_norm(x)


class PositionalConvEmbedding(torch.nn.Module):
    """Grouped conv over time, weight-normed (norm over all but the kernel axis).

    Arguments
    ---------
    hidden_size, kernel_size, groups : int
        Conv shape; even kernels drop the last output frame to keep the length.
    activation : str
        Activation name.

    Example
    -------
    >>> PositionalConvEmbedding(32, 16, 4, "gelu")(torch.randn(2, 7, 32)).shape
    torch.Size([2, 7, 32])
    """

    def __init__(self, hidden_size, kernel_size, groups, activation):
        super().__init__()
        conv = torch.nn.Conv1d(
            hidden_size,
            hidden_size,
            kernel_size=kernel_size,
            padding=kernel_size // 2,
            groups=groups,
        )
        self.conv = torch.nn.utils.parametrizations.weight_norm(
            conv, name="weight", dim=2
        )
        self.trim = 1 if kernel_size % 2 == 0 else 0
        self.activation = get_activation(activation)

    def forward(self, x):
        """Positional embedding of (batch, frames, hidden) input, same shape."""
        out = self.conv(x.transpose(1, 2))
        if self.trim:
            out = out[:, :, : -self.trim]
        return self.activation(out).transpose(1, 2)


class Encoder(torch.nn.Module):
    """Positional conv embedding, (post-LN only) LayerNorm, and the layers.

    Arguments
    ---------
    config : StudentConfig
        Architecture.

    Example
    -------
    >>> from speechbrain_skill.lobes.student.config import StudentConfig
    >>> config = StudentConfig.uniform("wavlm", 32, 2, 4, 64, 16,
    ...                                num_conv_pos_embeddings=16,
    ...                                num_conv_pos_embedding_groups=4)
    >>> states = Encoder(config)(torch.randn(2, 7, 32))
    >>> len(states), states[-1].shape
    (3, torch.Size([2, 7, 32]))
    """

    def __init__(self, config):
        super().__init__()
        self.pos_conv_embed = PositionalConvEmbedding(
            config.hidden_size,
            config.num_conv_pos_embeddings,
            config.num_conv_pos_embedding_groups,
            config.feat_extract_activation,
        )
        # Pre-LN models apply their encoder LayerNorm only to last_hidden_state,
        # which is not one of the hidden states: the student does not carry it.
        self.layer_norm = (
            None
            if config.do_stable_layer_norm
            else torch.nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        )
        self.dropout = torch.nn.Dropout(config.hidden_dropout)
        self.relative_position = (
            RelativePositionBias(
                config.num_buckets,
                config.max_bucket_distance,
                config.num_attention_heads,
            )
            if config.has_relative_position_bias
            else None
        )
        self.layers = torch.nn.ModuleList(
            EncoderLayer(config, index) for index in range(config.num_layers)
        )

    def forward(
        self, x, frame_mask=None, num_layers=None, state_zero_before_pos_conv=False
    ):
        """Return the hidden states [state 0, output of each layer].

        Arguments
        ---------
        x : torch.Tensor
            Projected features (batch, frames, hidden).
        frame_mask : torch.Tensor, optional
            Bool (batch, frames), True on real frames.
        num_layers : int, optional
            Run only the first layers (default: all).
        state_zero_before_pos_conv : bool
            State 0 is the projected features (padding zeroed) before the
            positional conv and the encoder LayerNorm (DPHuBERT reference)
            instead of the input of layer 1 (Hugging Face).

        Returns
        -------
        list of torch.Tensor
        """
        padding_bias = None
        if frame_mask is not None:
            x = x.masked_fill(~frame_mask.unsqueeze(-1), 0.0)
            padding_bias = torch.zeros(frame_mask.shape, dtype=x.dtype, device=x.device)
            padding_bias = padding_bias.masked_fill(
                ~frame_mask, torch.finfo(x.dtype).min
            )
            padding_bias = padding_bias[:, None, None, :]
        projected = x
        x = x + self.pos_conv_embed(x)
        if self.layer_norm is not None:
            x = self.layer_norm(x)
        x = self.dropout(x)
        position_bias = None
        if self.relative_position is not None:
            position_bias = self.relative_position(x.shape[1])
        states = [projected if state_zero_before_pos_conv else x]
        layers = self.layers if num_layers is None else self.layers[:num_layers]
        for layer in layers:
            x = layer(x, padding_bias, position_bias)
            states.append(x)
        return states
