"""The configuration of a prunable SSL student: every width is a per-layer field.

A pruned student is an ordinary model of its :class:`StudentConfig`: the conv
channels of each conv layer, the heads kept in each transformer layer (by
their index in the unpruned model), the FFN width of each layer and whether
each attention / FFN block exists at all are plain json-serialisable fields.
"""

import dataclasses
import json
from dataclasses import dataclass, field
from typing import List, Optional

SUPPORTED_MODEL_TYPES = ("wavlm", "hubert", "wav2vec2")
SUPPORTED_ACTIVATIONS = ("gelu", "gelu_new", "gelu_pytorch_tanh", "relu", "silu")
STRUCTURES = ("conv", "heads", "attention_layer", "ffn_units", "ffn_layer")
FORMAT_VERSION = 1


class StudentConfigError(ValueError):
    """Raised when a student configuration is inconsistent."""


@dataclass
class StudentConfig:
    """Architecture and pruning set-up of a :class:`PrunableSSLEncoder`.

    Arguments
    ---------
    model_type : str
        ``wavlm`` (gated relative position bias), ``hubert`` or ``wav2vec2``.
    hidden_size : int
        Transformer width (never pruned).
    num_attention_heads : int
        Heads of the unpruned model. It fixes the head size
        (``hidden_size // num_attention_heads``) and, for WavLM, the columns of
        the relative-position bias table.
    conv_channels : list of int
        Output channels of each conv feature-extractor layer.
    conv_kernels, conv_strides : list of int
        Kernel size and stride of each conv layer.
    attention_heads : list of list of int
        Per transformer layer, the original indices of the heads kept.
    attention_present : list of bool
        Per layer, whether the attention block exists. A present block with
        no heads outputs its output-projection bias.
    ffn_dims : list of int
        Per layer, the FFN intermediate width.
    ffn_present : list of bool
        Per layer, whether the FFN block exists.
    conv_bias : bool
        Conv layers have a bias.
    feat_extract_norm : str
        ``group`` (GroupNorm on conv layer 0 only) or ``layer`` (LayerNorm on
        every conv layer).
    feat_extract_activation, hidden_act : str
        Activations of the conv layers and of the FFN.
    feat_proj_layer_norm : bool
        LayerNorm before the feature projection (HuBERT can switch it off).
    num_conv_pos_embeddings, num_conv_pos_embedding_groups : int
        Kernel and groups of the convolutional positional embedding.
    do_stable_layer_norm : bool
        Pre-LN transformer layers (Large models) instead of post-LN (Base).
    layer_norm_eps : float
        Epsilon of the transformer and projection LayerNorms.
    num_buckets, max_bucket_distance : int
        WavLM relative-position buckets.
    hidden_dropout, attention_dropout, activation_dropout, feat_proj_dropout : float
        Dropout rates (active in training mode only).
    normalize_waveform : bool
        Normalise each waveform to zero mean, unit variance before the CNN.
    feature_grad_scale : float
        Multiplier of the gradient that flows back into the conv feature
        extractor (fairseq / s3prl ``feature_grad_mult``; DistilHuBERT: 0.1).
        The forward pass is unchanged.
    unpruned_num_params : int, optional
        Parameter count of the unpruned model, the reference of the sparsity.
        Filled in when the model is built if missing.
    prune_conv, prune_heads, prune_attention_layer : bool
        Gates on conv channels, heads, whole attention blocks.
    prune_ffn_units, prune_ffn_layer : bool
        Gates on FFN units, whole FFN blocks.
    gate_init_drop_rate : float
        Initial drop rate ``m`` of conv, head and block gates.
    ffn_unit_gate_init_drop_rate : float
        Initial drop rate of the FFN-unit gates.
    format_version : int
        Version of the serialised format.

    Example
    -------
    >>> config = StudentConfig.uniform("hubert", hidden_size=32, num_layers=2,
    ...                                num_heads=4, ffn_dim=64, conv_channels=16)
    >>> config.num_layers, config.head_dim, config.attention_heads[0]
    (2, 8, [0, 1, 2, 3])
    >>> StudentConfig.from_dict(config.to_dict()) == config
    True
    """

    model_type: str
    hidden_size: int
    num_attention_heads: int
    conv_channels: List[int]
    conv_kernels: List[int]
    conv_strides: List[int]
    attention_heads: List[List[int]]
    attention_present: List[bool]
    ffn_dims: List[int]
    ffn_present: List[bool]
    conv_bias: bool = False
    feat_extract_norm: str = "group"
    feat_extract_activation: str = "gelu"
    hidden_act: str = "gelu"
    feat_proj_layer_norm: bool = True
    num_conv_pos_embeddings: int = 128
    num_conv_pos_embedding_groups: int = 16
    do_stable_layer_norm: bool = False
    layer_norm_eps: float = 1e-5
    num_buckets: int = 320
    max_bucket_distance: int = 800
    hidden_dropout: float = 0.0
    attention_dropout: float = 0.0
    activation_dropout: float = 0.0
    feat_proj_dropout: float = 0.0
    normalize_waveform: bool = False
    feature_grad_scale: float = 1.0
    unpruned_num_params: Optional[int] = None
    prune_conv: bool = False
    prune_heads: bool = False
    prune_attention_layer: bool = False
    prune_ffn_units: bool = False
    prune_ffn_layer: bool = False
    gate_init_drop_rate: float = 0.01
    ffn_unit_gate_init_drop_rate: float = 0.5
    format_version: int = field(default=FORMAT_VERSION)

    def __post_init__(self):
        self.conv_channels = [int(c) for c in self.conv_channels]
        self.conv_kernels = [int(k) for k in self.conv_kernels]
        self.conv_strides = [int(s) for s in self.conv_strides]
        self.attention_heads = [
            sorted(int(h) for h in hs) for hs in self.attention_heads
        ]
        self.attention_present = [bool(p) for p in self.attention_present]
        self.ffn_dims = [int(d) for d in self.ffn_dims]
        self.ffn_present = [bool(p) for p in self.ffn_present]
        self._validate()

    def _validate(self):
        def fail(message):
            """Raise the configuration error."""
            raise StudentConfigError(message)

        if self.model_type not in SUPPORTED_MODEL_TYPES:
            fail(f"model_type '{self.model_type}' not in {SUPPORTED_MODEL_TYPES}.")
        if self.hidden_size % self.num_attention_heads:
            fail("hidden_size must be a multiple of num_attention_heads.")
        num_conv = len(self.conv_channels)
        if not (num_conv == len(self.conv_kernels) == len(self.conv_strides)):
            fail("conv_channels, conv_kernels and conv_strides differ in length.")
        if num_conv == 0 or min(self.conv_channels) < 1:
            fail(f"Every conv layer needs >= 1 channel, got {self.conv_channels}.")
        num_layers = len(self.ffn_dims)
        lengths = {
            len(self.attention_heads),
            len(self.attention_present),
            len(self.ffn_present),
            num_layers,
        }
        if len(lengths) != 1:
            fail("Per-layer lists (heads, ffn dims, present flags) differ in length.")
        for layer, heads in enumerate(self.attention_heads):
            if len(set(heads)) != len(heads) or any(
                h < 0 or h >= self.num_attention_heads for h in heads
            ):
                fail(f"Layer {layer}: invalid head indices {heads}.")
        if min(self.ffn_dims, default=0) < 0:
            fail("ffn_dims must be >= 0.")
        if self.feat_extract_norm not in ("group", "layer"):
            fail("feat_extract_norm must be 'group' or 'layer'.")
        for act in (self.hidden_act, self.feat_extract_activation):
            if act not in SUPPORTED_ACTIVATIONS:
                fail(f"Activation '{act}' not in {SUPPORTED_ACTIVATIONS}.")
        if self.hidden_size % self.num_conv_pos_embedding_groups:
            fail("hidden_size must be a multiple of num_conv_pos_embedding_groups.")
        for rate in (self.gate_init_drop_rate, self.ffn_unit_gate_init_drop_rate):
            if not 0.0 < rate < 1.0:
                fail(f"Gate initial drop rates must lie in (0, 1), got {rate}.")
        if self.format_version > FORMAT_VERSION:
            fail(
                f"Config format {self.format_version} is newer than this code "
                f"({FORMAT_VERSION})."
            )

    @property
    def num_layers(self):
        """Number of transformer layers."""
        return len(self.ffn_dims)

    @property
    def num_conv_layers(self):
        """Number of conv feature-extractor layers."""
        return len(self.conv_channels)

    @property
    def head_dim(self):
        """Size of one attention head."""
        return self.hidden_size // self.num_attention_heads

    @property
    def has_relative_position_bias(self):
        """Whether the model uses WavLM's gated relative position bias."""
        return self.model_type == "wavlm"

    @property
    def prunable_structures(self):
        """Names of the structures that carry gates (subset of :data:`STRUCTURES`)."""
        return tuple(name for name in STRUCTURES if getattr(self, f"prune_{name}"))

    def with_updates(self, **changes):
        """Return a validated copy with some fields replaced.

        Arguments
        ---------
        **changes
            Field values.

        Returns
        -------
        StudentConfig

        Example
        -------
        >>> config = StudentConfig.uniform("wav2vec2", 32, 2, 4, 64, 16)
        >>> config.with_updates(prune_heads=True).prunable_structures
        ('heads',)
        """
        return dataclasses.replace(self, **changes)

    def to_dict(self):
        """Plain-python (json-ready) dictionary of all fields.

        Returns
        -------
        dict

        Example
        -------
        >>> StudentConfig.uniform("wavlm", 32, 1, 4, 64, 16).to_dict()["ffn_dims"]
        [64]
        """
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values):
        """Build a config from :meth:`to_dict` output; unknown keys are an error.

        Arguments
        ---------
        values : dict
            Field values.

        Returns
        -------
        StudentConfig

        Example
        -------
        >>> values = StudentConfig.uniform("wavlm", 32, 1, 4, 64, 16).to_dict()
        >>> StudentConfig.from_dict(values).model_type
        'wavlm'
        """
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise StudentConfigError(f"Unknown student config fields: {unknown}.")
        return cls(**values)

    def to_json(self):
        """Serialise to a json string.

        Returns
        -------
        str

        Example
        -------
        >>> config = StudentConfig.uniform("hubert", 32, 1, 4, 64, 16)
        >>> '"model_type": "hubert"' in config.to_json()
        True
        """
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text):
        """Parse :meth:`to_json` output.

        Arguments
        ---------
        text : str
            The json document.

        Returns
        -------
        StudentConfig

        Example
        -------
        >>> config = StudentConfig.uniform("hubert", 32, 1, 4, 64, 16)
        >>> StudentConfig.from_json(config.to_json()) == config
        True
        """
        return cls.from_dict(json.loads(text))

    @classmethod
    def uniform(
        cls,
        model_type,
        hidden_size,
        num_layers,
        num_heads,
        ffn_dim,
        conv_channels=512,
        conv_kernels=(10, 3, 3, 3, 3, 2, 2),
        conv_strides=(5, 2, 2, 2, 2, 2, 2),
        **kwargs,
    ):
        """Config of an unpruned model with the same dims in every layer.

        Arguments
        ---------
        model_type : str
            ``wavlm``, ``hubert`` or ``wav2vec2``.
        hidden_size, num_layers, num_heads, ffn_dim : int
            Transformer shape.
        conv_channels : int
            Channels of every conv layer.
        conv_kernels, conv_strides : sequence of int
            Conv kernels and strides (default: the 20 ms wav2vec 2.0 CNN).
        **kwargs
            Other :class:`StudentConfig` fields.

        Returns
        -------
        StudentConfig

        Example
        -------
        >>> StudentConfig.uniform("wavlm", 768, 12, 12, 3072).conv_channels[-1]
        512
        """
        return cls(
            model_type=model_type,
            hidden_size=hidden_size,
            num_attention_heads=num_heads,
            conv_channels=[conv_channels] * len(conv_kernels),
            conv_kernels=list(conv_kernels),
            conv_strides=list(conv_strides),
            attention_heads=[list(range(num_heads)) for _ in range(num_layers)],
            attention_present=[True] * num_layers,
            ffn_dims=[ffn_dim] * num_layers,
            ffn_present=[True] * num_layers,
            **kwargs,
        )
