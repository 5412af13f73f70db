"""Multi-head self-attention with any subset of the original heads.

Heads are identified by their index in the unpruned model. That index
selects, for WavLM, the head's column of the shared relative-position bias
table and the slice of the layer input that drives the head's bias gate.
"""

import math

import torch
import torch.nn.functional as F

from speechbrain_skill.lobes.student.active_units import head_rows
from speechbrain_skill.lobes.student.hard_concrete import HardConcreteGate


def relative_position_buckets(num_frames, num_buckets, max_distance, device=None):
    """Bucket index of every (query, key) offset, as in WavLM (T5-style, bidirectional).

    Half of the buckets hold positive offsets (key after query). Within each
    half, the first quarter of ``num_buckets`` holds exact small distances and
    the rest are log-spaced up to ``max_distance``.

    Arguments
    ---------
    num_frames : int
        Sequence length.
    num_buckets : int
        Total number of buckets.
    max_distance : int
        Distance mapped to the last bucket.
    device : torch.device, optional
        Device of the result.

    Returns
    -------
    torch.Tensor
        Long tensor (num_frames, num_frames).

    Example
    -------
    >>> relative_position_buckets(3, 320, 800).tolist()
    [[0, 161, 162], [1, 0, 161], [2, 1, 0]]
    """
    half = num_buckets // 2
    exact = half // 2
    positions = torch.arange(num_frames, dtype=torch.long, device=device)
    offsets = positions.unsqueeze(0) - positions.unsqueeze(1)
    buckets = (offsets > 0).long() * half
    distance = offsets.abs()
    # Operation order matters: bucket boundaries must match the reference in fp32.
    log_ratio = torch.log(distance.clamp(min=1).float() / exact)
    log_ratio = log_ratio / math.log(max_distance / exact) * (half - exact)
    far = (exact + log_ratio).long().clamp(max=half - 1)
    return buckets + torch.where(distance < exact, distance, far)


class RelativePositionBias(torch.nn.Module):
    """WavLM's relative-position bias table, shared by all layers.

    The table keeps a column for every head of the unpruned model, whatever
    the heads kept: layers select their heads by original index. It is
    counted in the parameters (``num_buckets * num_heads``).

    Arguments
    ---------
    num_buckets : int
        Number of buckets.
    max_distance : int
        Largest distinguished distance.
    num_heads : int
        Heads of the unpruned model.

    Example
    -------
    >>> RelativePositionBias(320, 800, 4)(5).shape
    torch.Size([4, 5, 5])
    """

    def __init__(self, num_buckets, max_distance, num_heads):
        super().__init__()
        self.num_buckets = num_buckets
        self.max_distance = max_distance
        self.rel_attn_embed = torch.nn.Embedding(num_buckets, num_heads)

    def forward(self, num_frames):
        """Bias of every head for a sequence of ``num_frames``: (heads, T, T)."""
        device = self.rel_attn_embed.weight.device
        buckets = relative_position_buckets(
            num_frames, self.num_buckets, self.max_distance, device
        )
        # Contiguous per head: layers then select their heads by cheap row copies.
        return self.rel_attn_embed(buckets).permute(2, 0, 1).contiguous()


class SelfAttention(torch.nn.Module):
    """Self-attention over the heads listed in ``heads`` (original indices).

    An optional head gate multiplies each head's output before the output
    projection. With no heads left, the block outputs its output bias.

    Arguments
    ---------
    hidden_size : int
        Model width.
    head_dim : int
        Size of a head.
    heads : list of int
        Original indices of the heads this layer has.
    dropout : float
        Dropout on attention probabilities (training only).
    relative_position_gate : bool
        WavLM: gate the shared relative-position bias per head and frame.
    gate_drop_rate : float, optional
        Initial drop rate of a head gate; None means no gate.

    Example
    -------
    >>> attention = SelfAttention(32, 8, heads=[0, 2], dropout=0.0)
    >>> attention(torch.randn(2, 5, 32)).shape
    torch.Size([2, 5, 32])
    """

    def __init__(
        self,
        hidden_size,
        head_dim,
        heads,
        dropout,
        relative_position_gate=False,
        gate_drop_rate=None,
    ):
        super().__init__()
        self.hidden_size = hidden_size
        self.head_dim = head_dim
        self.num_heads = len(heads)
        self.dropout = dropout
        self.relative_position_gate = relative_position_gate
        self.register_buffer(
            "head_index", torch.tensor(list(heads), dtype=torch.long), persistent=False
        )
        self.all_heads = list(heads) == list(range(hidden_size // head_dim))
        self.head_gate = None
        if self.num_heads == 0:
            self.out_bias = torch.nn.Parameter(torch.zeros(hidden_size))
            return
        width = self.num_heads * head_dim
        self.q_proj = torch.nn.Linear(hidden_size, width)
        self.k_proj = torch.nn.Linear(hidden_size, width)
        self.v_proj = torch.nn.Linear(hidden_size, width)
        self.out_proj = torch.nn.Linear(width, hidden_size)
        if relative_position_gate:
            self.gru_rel_pos_const = torch.nn.Parameter(torch.ones(self.num_heads))
            self.gru_rel_pos_linear = torch.nn.Linear(head_dim, 8)
        if gate_drop_rate is not None:
            self.head_gate = HardConcreteGate(
                self.num_heads, init_drop_rate=gate_drop_rate
            )

    def _split_heads(self, x):
        batch, frames, _ = x.shape
        return x.view(batch, frames, -1, self.head_dim).transpose(1, 2)

    def _gated_position_bias(self, x, position_bias, kept=None):
        """WavLM: per head and query frame, scale the head's shared bias row.

        ``kept`` lists the layer's heads that are computed (None: all).
        """
        batch, frames, _ = x.shape
        chunks = x.view(batch, frames, -1, self.head_dim)
        heads = self.head_index if kept is None else self.head_index[kept]
        const = self.gru_rel_pos_const if kept is None else self.gru_rel_pos_const[kept]
        if kept is not None or not self.all_heads:
            chunks = chunks.index_select(2, heads)
            position_bias = position_bias.index_select(0, heads)
        projected = self.gru_rel_pos_linear(chunks)
        projected = projected.view(*projected.shape[:-1], 2, 4).sum(-1)
        gate_a, gate_b = torch.sigmoid(projected.transpose(1, 2)).unbind(-1)
        gate = gate_a * (gate_b * const.view(1, -1, 1) - 1.0) + 2.0
        return gate.unsqueeze(-1) * position_bias.unsqueeze(0)

    def _project(self, linear, x, rows):
        if rows is None:
            return self._split_heads(linear(x))
        weight = linear.weight.index_select(0, rows)
        return self._split_heads(F.linear(x, weight, linear.bias.index_select(0, rows)))

    def forward(self, x, padding_bias=None, position_bias=None):
        """Attend.

        Heads whose gate value is exactly 0 are skipped (see
        :mod:`~speechbrain_skill.lobes.student.active_units`).

        Arguments
        ---------
        x : torch.Tensor
            Input (batch, frames, hidden).
        padding_bias : torch.Tensor, optional
            Additive mask (batch, 1, 1, frames): 0 on real keys, a very
            negative number on padding keys.
        position_bias : torch.Tensor, optional
            WavLM bias of all original heads (heads, frames, frames).

        Returns
        -------
        torch.Tensor
            (batch, frames, hidden).
        """
        if self.num_heads == 0:
            return self.out_bias.expand_as(x)
        gate = kept = rows = None
        if self.head_gate is not None:
            gate, kept = self.head_gate.value_and_units()
            if kept is not None:
                gate = gate.index_select(0, kept)
                rows = head_rows(kept, self.head_dim)
        query = self._project(self.q_proj, x, rows)
        key = self._project(self.k_proj, x, rows)
        value = self._project(self.v_proj, x, rows)
        bias = padding_bias
        if self.relative_position_gate:
            bias = self._gated_position_bias(x, position_bias.to(x.dtype), kept)
            if padding_bias is not None:
                bias += padding_bias
        dropout = self.dropout if self.training else 0.0
        context = F.scaled_dot_product_attention(
            query,
            key,
            value,
            attn_mask=bias,
            dropout_p=dropout,
            scale=self.head_dim**-0.5,
        )
        if gate is not None:
            context = context * gate.view(1, -1, 1, 1).to(context.dtype)
        batch, _, frames, _ = context.shape
        context = context.transpose(1, 2).reshape(batch, frames, -1)
        if rows is None:
            return self.out_proj(context)
        weight = self.out_proj.weight.index_select(1, rows)
        return F.linear(context, weight, self.out_proj.bias)
