"""The prunable student: a wav2vec 2.0-family model, every width a config field."""

import torch

from speechbrain_skill.lobes.frames import conv_output_lengths, relative_to_absolute
from speechbrain_skill.lobes.student.active_units import GateDraw, planned_gates
from speechbrain_skill.lobes.student.config import STRUCTURES
from speechbrain_skill.lobes.student.conv import FeatureExtractor, FeatureProjection
from speechbrain_skill.lobes.student.encoder import Encoder
from speechbrain_skill.lobes.student.forward import student_hidden_states
from speechbrain_skill.lobes.student.masks import StructureDims, mask_dims
from speechbrain_skill.lobes.student.param_count import count_params

HIDDEN_STATE_ZERO = ("transformer_input", "projection")


def check_hidden_state_zero(name):
    """Validate a hidden-state-0 convention name.

    ``transformer_input`` (Hugging Face ``hidden_states[0]``): the projected
    CNN features after the positional convolution and (post-LN models) the
    encoder LayerNorm, i.e. the input of the first transformer layer.
    ``projection`` (the DPHuBERT reference, torchaudio-derived): the feature
    projection output BEFORE both, padding frames zeroed.

    Arguments
    ---------
    name : str
        One of :data:`HIDDEN_STATE_ZERO`.

    Returns
    -------
    str

    Example
    -------
    >>> check_hidden_state_zero("projection")
    'projection'
    """
    if name not in HIDDEN_STATE_ZERO:
        raise ValueError(
            f"hidden_state_zero must be one of {HIDDEN_STATE_ZERO}, got {name!r}."
        )
    return name


class PrunableSSLEncoder(torch.nn.Module):
    """WavLM / HuBERT / wav2vec 2.0 student with optional hard-concrete gates.

    The forward pass has the contract of
    :class:`~speechbrain_skill.lobes.teacher.FrozenSSLTeacher`: waveforms and
    SpeechBrain relative lengths in, ``(hidden, frame_lens)`` out, with
    ``hidden`` stacked as (num_layers + 1, batch, frames, hidden_size) and
    indexed like Hugging Face ``output_hidden_states``: entry 0 is the input
    of the first transformer layer, entry i the output of layer i.

    Gates exist for the structures the config marks prunable. In training
    mode each forward samples them; in eval mode they are deterministic
    (:class:`HardConcreteGate`). :meth:`prune` returns a physically smaller
    model without gates. There is no LayerDrop.

    Arguments
    ---------
    config : StudentConfig
        Architecture and pruning set-up.

    Example
    -------
    >>> from speechbrain_skill.lobes.student.config import StudentConfig
    >>> config = StudentConfig.uniform("wavlm", 32, 2, 4, 64, 16,
    ...                                num_conv_pos_embeddings=16,
    ...                                num_conv_pos_embedding_groups=4,
    ...                                prune_heads=True, prune_ffn_units=True)
    >>> student = PrunableSSLEncoder(config).eval()
    >>> hidden, frame_lens = student(torch.randn(2, 16000), torch.tensor([1.0, 0.5]))
    >>> hidden.shape, frame_lens.tolist()
    (torch.Size([3, 2, 49, 32]), [49, 24])
    >>> 0.0 < student.expected_sparsity().item() < 1.0
    True
    >>> small = student.prune()
    >>> from speechbrain_skill.lobes.student.param_count import num_params
    >>> small.config.prunable_structures, small.config.ffn_dims
    ((), [53, 53])
    >>> num_params(small) == student.num_params_for_masks()
    True
    """

    def __init__(self, config):
        super().__init__()
        if config.unpruned_num_params is None:
            config = config.with_updates(unpruned_num_params=int(count_params(config)))
        self.config = config
        self.feature_extractor = FeatureExtractor(config)
        self.feature_projection = FeatureProjection(
            config.conv_channels[-1],
            config.hidden_size,
            config.feat_proj_layer_norm,
            config.layer_norm_eps,
            config.feat_proj_dropout,
        )
        self.encoder = Encoder(config)

    @classmethod
    def from_hf(
        cls,
        source,
        prune_conv=False,
        prune_heads=False,
        prune_attention_layer=False,
        prune_ffn_units=False,
        prune_ffn_layer=False,
        num_layers=None,
        normalize_waveform=None,
        **config_overrides,
    ):
        """Build a student from a Hugging Face WavLM / HuBERT / wav2vec 2.0 model.

        Arguments
        ---------
        source : str, os.PathLike or transformers.PreTrainedModel
            Hub id, local ``save_pretrained`` directory, ``builtin:<name>`` or
            a loaded model.
        prune_conv, prune_heads, prune_attention_layer : bool
            Gates on conv channels, heads, whole attention blocks.
        prune_ffn_units, prune_ffn_layer : bool
            Gates on FFN units, whole FFN blocks.
        num_layers : int, optional
            Keep only the first transformer layers (e.g. 2 for DistilHuBERT).
        normalize_waveform : bool, optional
            Default: the source's feature-extractor setting (False for a
            model object).
        **config_overrides
            Other :class:`StudentConfig` fields (e.g. ``hidden_dropout=0.0``).

        Returns
        -------
        PrunableSSLEncoder
            In eval mode.

        Example
        -------
        >>> import tempfile
        >>> from speechbrain_skill.lobes.tiny_models import save_tiny_model
        >>> path = save_tiny_model(tempfile.mkdtemp(), "hubert")
        >>> student = PrunableSSLEncoder.from_hf(path, prune_heads=True, num_layers=2)
        >>> student.config.num_layers, len(student.gate_parameters())
        (2, 2)
        """
        from speechbrain_skill.lobes.student.hf_import import student_from_hf

        return student_from_hf(
            cls,
            source,
            prune_conv=prune_conv,
            prune_heads=prune_heads,
            prune_attention_layer=prune_attention_layer,
            prune_ffn_units=prune_ffn_units,
            prune_ffn_layer=prune_ffn_layer,
            num_layers=num_layers,
            normalize_waveform=normalize_waveform,
            **config_overrides,
        )

    @property
    def num_hidden_states(self):
        """Number of hidden states returned: transformer layers + 1."""
        return self.config.num_layers + 1

    def frame_lengths(self, sample_lengths):
        """Frames produced for utterances of the given absolute sample lengths.

        Arguments
        ---------
        sample_lengths : torch.Tensor
            Lengths in samples.

        Returns
        -------
        torch.Tensor

        Example
        -------
        >>> from speechbrain_skill.lobes.student.config import StudentConfig
        >>> config = StudentConfig.uniform("hubert", 32, 1, 4, 64, 16, prune_heads=True)
        >>> student = PrunableSSLEncoder(config)
        >>> student.frame_lengths(torch.tensor([16000, 400])).tolist()
        [49, 1]
        """
        return conv_output_lengths(
            sample_lengths, self.config.conv_kernels, self.config.conv_strides
        )

    def _hidden_states(
        self, wavs, wav_lens, num_layers=None, hidden_state_zero="transformer_input"
    ):
        lengths = None
        if wav_lens is not None:
            lengths = relative_to_absolute(wav_lens, wavs.shape[1])
        drawn, self.next_draw = getattr(self, "next_draw", None), None
        if not self.training:
            drawn = None  # a draw ahead is a training sample
        with planned_gates(self.forward_gates(num_layers), drawn):
            return student_hidden_states(
                self,
                self.config,
                wavs,
                lengths,
                num_layers,
                check_hidden_state_zero(hidden_state_zero),
            )

    def draw_gates_ahead(self):
        """Sample the gates of the next training forward pass now.

        Called right after an optimizer step (the samples follow the updated
        ``log_alpha``): the zeros of the samples then reach the host during
        the step's own host sync, and the next pass skips units without
        waiting for the GPU (see
        :class:`~speechbrain_skill.lobes.student.active_units.GateDraw`).
        Does nothing in eval mode or without gates.

        Example
        -------
        >>> from speechbrain_skill.lobes.student.config import StudentConfig
        >>> config = StudentConfig.uniform("hubert", 32, 1, 4, 64, 16, prune_heads=True)
        >>> student = PrunableSSLEncoder(config).train()
        >>> student.draw_gates_ahead()
        >>> student.next_draw.values[0].shape
        torch.Size([4])
        """
        gates = self.forward_gates()
        ahead = self.training and gates
        self.next_draw = GateDraw(gates, ahead=True) if ahead else None

    def train(self, mode=True):
        """Switch mode; leaving training drops a gate draw made ahead."""
        if not mode:
            self.next_draw = None
        return super().train(mode)

    def forward_gates(self, num_layers=None):
        """The gates a forward pass through ``num_layers`` layers uses, in order.

        Example
        -------
        >>> from speechbrain_skill.lobes.student.config import StudentConfig
        >>> config = StudentConfig.uniform("hubert", 32, 2, 4, 64, 16, prune_heads=True)
        >>> student = PrunableSSLEncoder(config)
        >>> len(student.forward_gates()), len(student.forward_gates(1))
        (2, 1)
        """
        gates = []
        for name, gate in self.named_gates().items():
            parts = name.split(".")
            if num_layers is not None and parts[:2] == ["encoder", "layers"]:
                if int(parts[2]) >= num_layers:
                    continue
            gates.append(gate)
        return gates

    def forward(self, wavs, wav_lens=None, hidden_state_zero="transformer_input"):
        """Compute all hidden states.

        Arguments
        ---------
        wavs : torch.Tensor
            Waveforms (batch, time), 16 kHz.
        wav_lens : torch.Tensor, optional
            SpeechBrain relative lengths; None means no padding.
        hidden_state_zero : str
            ``transformer_input`` (Hugging Face, default) or ``projection``
            (DPHuBERT reference), see :func:`check_hidden_state_zero`.

        Returns
        -------
        hidden : torch.Tensor
            (num_layers + 1, batch, frames, hidden_size).
        frame_lens : torch.Tensor
            Number of real frames per utterance (long).

        Example
        -------
        >>> from speechbrain_skill.lobes.student.config import StudentConfig
        >>> config = StudentConfig.uniform("hubert", 32, 1, 4, 64, 16, prune_heads=True)
        >>> student = PrunableSSLEncoder(config)
        >>> wavs, wav_lens = torch.randn(2, 8000), torch.tensor([1.0, 0.5])
        >>> hidden, lens = student.eval()(wavs, wav_lens)
        >>> hidden.shape, lens.tolist()
        (torch.Size([2, 2, 24, 32]), [24, 12])
        """
        states, frame_lens = self._hidden_states(
            wavs, wav_lens, hidden_state_zero=hidden_state_zero
        )
        return torch.stack(states, dim=0), frame_lens

    def extract_features(
        self, wavs, wav_lens=None, layers=None, hidden_state_zero="transformer_input"
    ):
        """Hidden states of selected layers, computing no deeper than needed.

        Arguments
        ---------
        wavs : torch.Tensor
            Waveforms (batch, time).
        wav_lens : torch.Tensor, optional
            SpeechBrain relative lengths.
        layers : list of int, optional
            Hidden-state indices (0 = projected CNN features, by default after the
            positional embedding, i = output of layer i; negative indices
            count from the end). Default: all.
        hidden_state_zero : str
            Convention of state 0, see :meth:`forward`.

        Returns
        -------
        features : list of torch.Tensor
            One (batch, frames, hidden_size) tensor per requested index.
        frame_lens : torch.Tensor
            Real frames per utterance.

        Example
        -------
        >>> from speechbrain_skill.lobes.student.config import StudentConfig
        >>> config = StudentConfig.uniform("hubert", 32, 3, 4, 64, 16,
        ...                                num_conv_pos_embeddings=16,
        ...                                num_conv_pos_embedding_groups=4)
        >>> student = PrunableSSLEncoder(config).eval()
        >>> feats, lens = student.extract_features(torch.randn(1, 8000), layers=[0, -1])
        >>> len(feats), feats[1].shape
        (2, torch.Size([1, 24, 32]))
        """
        count = self.num_hidden_states
        if layers is not None and len(layers) == 0:
            raise ValueError("extract_features needs at least one layer index.")
        if layers is None:
            layers = list(range(count))
        indices = []
        for layer in layers:
            if not -count <= layer < count:
                raise IndexError(
                    f"Hidden state {layer} out of range for {count} states."
                )
            indices.append(layer % count)
        states, frame_lens = self._hidden_states(
            wavs, wav_lens, max(indices), hidden_state_zero
        )
        return [states[i] for i in indices], frame_lens

    # ----- gates ---------------------------------------------------------------

    def named_gates(self):
        """The gate modules, keyed by their module name.

        Returns
        -------
        dict
            name -> :class:`HardConcreteGate`.

        Example
        -------
        >>> from speechbrain_skill.lobes.student.config import StudentConfig
        >>> config = StudentConfig.uniform("hubert", 32, 1, 4, 64, 16, prune_heads=True)
        >>> student = PrunableSSLEncoder(config)
        >>> list(student.named_gates())
        ['encoder.layers.0.attention.head_gate']
        """
        from speechbrain_skill.lobes.student.hard_concrete import HardConcreteGate

        return {
            name: module
            for name, module in self.named_modules()
            if isinstance(module, HardConcreteGate)
        }

    def gate_parameters(self):
        """The ``log_alpha`` parameters of all gates (their own optimizer group).

        Returns
        -------
        list of torch.nn.Parameter

        Example
        -------
        >>> from speechbrain_skill.lobes.student.config import StudentConfig
        >>> config = StudentConfig.uniform("hubert", 32, 1, 4, 64, 16, prune_heads=True)
        >>> student = PrunableSSLEncoder(config)
        >>> [p.shape for p in student.gate_parameters()]
        [torch.Size([4])]
        """
        return [p for n, p in self.named_parameters() if n.endswith("log_alpha")]

    def main_parameters(self):
        """All parameters except the gates'.

        Returns
        -------
        list of torch.nn.Parameter

        Example
        -------
        >>> from speechbrain_skill.lobes.student.config import StudentConfig
        >>> config = StudentConfig.uniform("hubert", 32, 1, 4, 64, 16, prune_heads=True)
        >>> student = PrunableSSLEncoder(config)
        >>> from speechbrain_skill.lobes.student.param_count import num_params
        >>> sum(p.numel() for p in student.main_parameters()) == num_params(student)
        True
        """
        return [p for n, p in self.named_parameters() if not n.endswith("log_alpha")]

    def _gate_lists(self):
        """Per structure, the gate module of each conv layer / transformer layer."""
        layers = self.encoder.layers
        return {
            "conv": [c.channel_gate for c in self.feature_extractor.conv_layers],
            "heads": [
                None if layer.attention is None else layer.attention.head_gate
                for layer in layers
            ],
            "attention_layer": [layer.attention_gate for layer in layers],
            "ffn_units": [
                None if layer.feed_forward is None else layer.feed_forward.unit_gate
                for layer in layers
            ],
            "ffn_layer": [layer.ffn_gate for layer in layers],
        }

    def current_masks(self):
        """The deterministic (eval-mode) masks of all gates, whatever the mode.

        Returns
        -------
        dict
            See :mod:`speechbrain_skill.lobes.student.masks`; None where a
            structure has no gate.

        Example
        -------
        >>> from speechbrain_skill.lobes.student.config import StudentConfig
        >>> config = StudentConfig.uniform("hubert", 32, 1, 4, 64, 16, prune_heads=True)
        >>> student = PrunableSSLEncoder(config)
        >>> masks = student.current_masks()
        >>> masks["heads"][0].shape, masks["conv"][0]
        (torch.Size([4]), None)
        """
        with torch.no_grad():
            return {
                name: [None if g is None else g.deterministic_mask() for g in gates]
                for name, gates in self._gate_lists().items()
            }

    def expected_dims(self):
        """Expected kept sizes under the gates (differentiable, float64).

        Returns
        -------
        StructureDims

        Example
        -------
        >>> from speechbrain_skill.lobes.student.config import StudentConfig
        >>> config = StudentConfig.uniform("hubert", 32, 1, 4, 64, 16, prune_heads=True)
        >>> student = PrunableSSLEncoder(config)
        >>> dims = student.expected_dims()
        >>> round(float(dims.heads[0]), 2), dims.ffn_units
        (3.99, [64])
        """
        gates = self._gate_lists()
        config = self.config

        def probs(gate):
            """Keep probabilities of a gate's units, in float64."""
            return gate.keep_probability().double()

        dims = StructureDims([], [], [], [], [], [])
        for gate, channels in zip(gates["conv"], config.conv_channels):
            dims.conv.append(channels if gate is None else probs(gate).sum())
        for layer in range(config.num_layers):
            present = config.attention_present[layer]
            head_gate = gates["heads"][layer]
            block_gate = gates["attention_layer"][layer]
            num_heads = len(config.attention_heads[layer])
            if not present:
                heads, any_head, block = 0, 0, 0
            elif head_gate is None:
                heads, any_head = num_heads, int(num_heads > 0)
            else:
                heads = probs(head_gate).sum()
                any_head = 1.0 - torch.prod(1.0 - probs(head_gate))
            if present:
                block = 1 if block_gate is None else probs(block_gate)[0]
            dims.heads.append(heads)
            dims.any_head.append(any_head)
            dims.attention.append(block)

            present = config.ffn_present[layer]
            unit_gate = gates["ffn_units"][layer]
            block_gate = gates["ffn_layer"][layer]
            if not present:
                units, block = 0, 0
            else:
                units = config.ffn_dims[layer]
                units = units if unit_gate is None else probs(unit_gate).sum()
                block = 1 if block_gate is None else probs(block_gate)[0]
            dims.ffn_units.append(units)
            dims.ffn.append(block)
        return dims

    def expected_num_params(self):
        """Expected number of parameters under the gates (differentiable scalar).

        Returns
        -------
        torch.Tensor
            float64 scalar (a constant tensor if the model has no gates).

        Example
        -------
        >>> from speechbrain_skill.lobes.student.config import StudentConfig
        >>> config = StudentConfig.uniform("hubert", 32, 1, 4, 64, 16, prune_heads=True)
        >>> student = PrunableSSLEncoder(config)
        >>> expected = student.expected_num_params()
        >>> expected.requires_grad, expected.item() < student.config.unpruned_num_params
        (True, True)
        """
        total = count_params(self.config, self.expected_dims())
        device = next(self.parameters()).device
        return torch.as_tensor(total, dtype=torch.float64, device=device)

    def expected_sparsity(self):
        """``1 - E[params] / config.unpruned_num_params`` (differentiable scalar).

        Returns
        -------
        torch.Tensor

        Example
        -------
        >>> from speechbrain_skill.lobes.student.config import StudentConfig
        >>> config = StudentConfig.uniform("hubert", 32, 1, 4, 64, 16, prune_heads=True)
        >>> student = PrunableSSLEncoder(config)
        >>> 0.0 < student.expected_sparsity().item() < 0.01
        True
        """
        return 1.0 - self.expected_num_params() / float(self.config.unpruned_num_params)

    def num_params_for_masks(self, masks=None):
        """Exact parameter count of the model materialised with deterministic masks.

        Arguments
        ---------
        masks : dict, optional
            See :mod:`speechbrain_skill.lobes.student.masks`; default:
            :meth:`current_masks`.

        Returns
        -------
        int

        Example
        -------
        >>> from speechbrain_skill.lobes.student.config import StudentConfig
        >>> config = StudentConfig.uniform("hubert", 32, 1, 4, 64, 16, prune_heads=True)
        >>> student = PrunableSSLEncoder(config)
        >>> masks = {"heads": [torch.tensor([1.0, 0.0, 0.0, 0.0])]}
        >>> student.config.unpruned_num_params - student.num_params_for_masks(masks)
        3144
        """
        if masks is None:
            masks = self.current_masks()
        return int(count_params(self.config, mask_dims(self.config, masks)))

    def prune(self, masks=None):
        """Materialise a physically smaller model without gates.

        Arguments
        ---------
        masks : dict, optional
            Deterministic masks; default: :meth:`current_masks`. Any structure
            may be masked, gated or not.

        Returns
        -------
        PrunableSSLEncoder
            A new model (same device and dtype, eval mode).

        Example
        -------
        >>> from speechbrain_skill.lobes.student.config import StudentConfig
        >>> config = StudentConfig.uniform("hubert", 32, 1, 4, 64, 16, prune_heads=True)
        >>> student = PrunableSSLEncoder(config)
        >>> small = student.prune({"heads": [torch.tensor([1.0, 0.0, 0.0, 0.5])]})
        >>> small.config.attention_heads, small.named_gates()
        ([[0, 3]], {})
        """
        from speechbrain_skill.lobes.student.materialise import materialise

        return materialise(self, masks)

    def extra_repr(self):
        """Summary of the config shown by ``print(model)``."""
        gated = ", ".join(s for s in STRUCTURES if s in self.config.prunable_structures)
        return f"model_type={self.config.model_type}, gates=[{gated}]"
