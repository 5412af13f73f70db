"""The conv feature extractor (waveform -> 20 ms frames) and the feature projection."""

import torch
import torch.nn.functional as F

from speechbrain_skill.lobes.student.activations import get_activation
from speechbrain_skill.lobes.student.hard_concrete import HardConcreteGate

# Hugging Face builds the conv-layer norms with PyTorch's default epsilon,
# not with config.layer_norm_eps.
CONV_NORM_EPS = 1e-5


class ConvLayer(torch.nn.Module):
    """Conv1d -> optional norm -> activation -> optional channel gate.

    The channel gate multiplies each output channel after the activation
    (as in DPHuBERT), so its kept values fold into the next layer's inputs.

    Arguments
    ---------
    in_channels, out_channels, kernel_size, stride : int
        Conv shape.
    bias : bool
        Conv bias.
    norm : str or None
        ``group`` (GroupNorm with one group per channel), ``layer`` (LayerNorm
        over channels) or None.
    activation : str
        Activation name.
    gate_drop_rate : float or None
        Initial drop rate of a channel gate; None means no gate.

    Example
    -------
    >>> layer = ConvLayer(1, 8, 10, 5, bias=False, norm="group", activation="gelu")
    >>> layer(torch.randn(2, 1, 400)).shape
    torch.Size([2, 8, 79])
    """

    def __init__(
        self,
        in_channels,
        out_channels,
        kernel_size,
        stride,
        bias,
        norm,
        activation,
        gate_drop_rate=None,
    ):
        super().__init__()
        self.conv = torch.nn.Conv1d(
            in_channels, out_channels, kernel_size, stride=stride, bias=bias
        )
        if norm == "group":
            self.norm = torch.nn.GroupNorm(
                out_channels, out_channels, eps=CONV_NORM_EPS
            )
        elif norm == "layer":
            self.norm = torch.nn.LayerNorm(out_channels, eps=CONV_NORM_EPS)
        else:
            self.norm = None
        self.norm_type = norm
        self.activation = get_activation(activation)
        self.channel_gate = (
            None
            if gate_drop_rate is None
            else HardConcreteGate(out_channels, init_drop_rate=gate_drop_rate)
        )

    def forward(self, x):
        """Apply the layer to (batch, channels, time).

        Arguments
        ---------
        x : torch.Tensor
            Input (batch, in_channels, time).

        Returns
        -------
        torch.Tensor
            Output (batch, out_channels, frames).
        """
        return self.forward_active(x)[0]

    def forward_active(self, x, in_kept=None, skip_outputs=False):
        """Apply the layer computing only channels with a non-zero gate value.

        Arguments
        ---------
        x : torch.Tensor
            Input (batch, channels, time): all input channels, or only
            those listed in ``in_kept``.
        in_kept : torch.Tensor, optional
            Input channels present in ``x`` (None: all).
        skip_outputs : bool
            Leave out output channels whose gate value is exactly 0 (not
            possible with a LayerNorm over channels, which sees them).

        Returns
        -------
        out : torch.Tensor
            (batch, channels, frames): all output channels, or those in
            ``out_kept``.
        out_kept : torch.Tensor or None
            Output channels present in ``out`` (None: all).

        Example
        -------
        >>> layer = ConvLayer(4, 6, 3, 2, bias=True, norm=None, activation="gelu")
        >>> out, kept = layer.forward_active(torch.randn(1, 2, 9), torch.tensor([0, 3]))
        >>> out.shape, kept
        (torch.Size([1, 6, 4]), None)
        """
        gate = out_kept = None
        if self.channel_gate is not None:
            skip = skip_outputs and self.norm_type != "layer"
            gate, out_kept = self.channel_gate.value_and_units(units=skip)
            out_kept = out_kept if skip else None
        if in_kept is None and out_kept is None:
            x = self.conv(x)
        else:
            weight, bias = self.conv.weight, self.conv.bias
            if out_kept is not None:
                weight = weight.index_select(0, out_kept)
                bias = None if bias is None else bias.index_select(0, out_kept)
            if in_kept is not None:
                weight = weight.index_select(1, in_kept)
            x = F.conv1d(x, weight, bias, stride=self.conv.stride)
        if self.norm_type == "group":
            if out_kept is None:
                x = self.norm(x)
            else:
                x = F.group_norm(
                    x,
                    x.shape[1],
                    self.norm.weight.index_select(0, out_kept),
                    self.norm.bias.index_select(0, out_kept),
                    self.norm.eps,
                )
        elif self.norm_type == "layer":
            x = self.norm(x.transpose(1, 2)).transpose(1, 2)
        x = self.activation(x)
        if gate is not None:
            if out_kept is not None:
                gate = gate.index_select(0, out_kept)
            # In the activations' dtype: an fp32 gate would upcast them (autocast).
            x = x * gate.to(x.dtype).unsqueeze(-1)
        return x, out_kept


class FeatureExtractor(torch.nn.Module):
    """The stack of conv layers of a :class:`StudentConfig`.

    Arguments
    ---------
    config : StudentConfig
        Architecture.

    Example
    -------
    >>> from speechbrain_skill.lobes.student.config import StudentConfig
    >>> config = StudentConfig.uniform("hubert", 32, 1, 4, 64, conv_channels=16)
    >>> FeatureExtractor(config)(torch.randn(2, 16000)).shape
    torch.Size([2, 16, 49])
    """

    def __init__(self, config):
        super().__init__()
        gate_rate = config.gate_init_drop_rate if config.prune_conv else None
        layers = []
        in_channels = 1
        for index, out_channels in enumerate(config.conv_channels):
            if config.feat_extract_norm == "layer":
                norm = "layer"
            else:
                norm = "group" if index == 0 else None
            layers.append(
                ConvLayer(
                    in_channels,
                    out_channels,
                    config.conv_kernels[index],
                    config.conv_strides[index],
                    bias=config.conv_bias,
                    norm=norm,
                    activation=config.feat_extract_activation,
                    gate_drop_rate=gate_rate,
                )
            )
            in_channels = out_channels
        self.conv_layers = torch.nn.ModuleList(layers)

    def forward(self, wavs):
        """Map waveforms (batch, time) to features (batch, channels, frames).

        Arguments
        ---------
        wavs : torch.Tensor
            Waveforms (batch, time).

        Returns
        -------
        torch.Tensor
        """
        x, kept = wavs.unsqueeze(1), None
        last = len(self.conv_layers) - 1
        for index, layer in enumerate(self.conv_layers):
            # The last layer's channels all reach the projection LayerNorm.
            x, kept = layer.forward_active(x, kept, skip_outputs=index < last)
        return x


class FeatureProjection(torch.nn.Module):
    """Optional LayerNorm over conv channels, then Linear to the hidden size.

    When the LayerNorm is present, the module keeps a ``channel_scale``
    buffer (ones unless the last conv layer was materialised with soft gate
    values): those values cannot be folded through a LayerNorm, so they are
    applied to its input. Without the LayerNorm they are folded into the
    projection and no buffer exists.

    Arguments
    ---------
    in_channels, hidden_size : int
        Input channels (last conv layer) and output width.
    layer_norm : bool
        Use the LayerNorm.
    eps : float
        LayerNorm epsilon.
    dropout : float
        Dropout after the projection.

    Example
    -------
    >>> FeatureProjection(16, 32, True, 1e-5, 0.0)(torch.randn(2, 5, 16)).shape
    torch.Size([2, 5, 32])
    """

    def __init__(self, in_channels, hidden_size, layer_norm, eps, dropout):
        super().__init__()
        if layer_norm:
            self.layer_norm = torch.nn.LayerNorm(in_channels, eps=eps)
            self.register_buffer("channel_scale", torch.ones(in_channels))
        else:
            self.layer_norm = None
        self.projection = torch.nn.Linear(in_channels, hidden_size)
        self.dropout = torch.nn.Dropout(dropout)

    def forward(self, features):
        """Project (batch, frames, channels) features to (batch, frames, hidden).

        Arguments
        ---------
        features : torch.Tensor
            Conv features, channels last.

        Returns
        -------
        torch.Tensor
        """
        if self.layer_norm is not None:
            features = self.layer_norm(features * self.channel_scale)
        return self.dropout(self.projection(features))
