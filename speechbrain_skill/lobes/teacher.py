"""The frozen teacher: Hugging Face SSL weights run on this package's own model."""

import torch

from speechbrain_skill.lobes.hf_ssl import load_hf_ssl_model, waveform_normalization
from speechbrain_skill.lobes.student.model import (
    PrunableSSLEncoder,
    check_hidden_state_zero,
)

NO_DROPOUT = dict(
    hidden_dropout=0.0,
    attention_dropout=0.0,
    activation_dropout=0.0,
    feat_proj_dropout=0.0,
)


class FrozenSSLTeacher(torch.nn.Module):
    """A frozen WavLM / HuBERT / wav2vec 2.0 that returns its hidden states.

    The weights of a Hugging Face model are imported into
    :class:`~speechbrain_skill.lobes.student.PrunableSSLEncoder` (unpruned,
    no gates, no dropout), which reproduces Hugging Face's
    ``output_hidden_states`` (tests/test_student_parity.py) and is faster:
    its attention runs PyTorch's fused ``scaled_dot_product_attention`` and
    it stops after the deepest layer asked for. The forward pass runs under
    ``torch.inference_mode``, in the precision of the surrounding autocast
    (SpeechBrain's ``--precision``); the stacked result is an ordinary
    tensor that autograd may use (e.g. in a learned layer weighting). The
    model is always in eval mode: ``train()`` cannot switch it.

    Arguments
    ---------
    source : str or transformers.PreTrainedModel
        Hub id, local directory, ``builtin:<name>`` or a loaded model.
    normalize_waveform : bool, optional
        Per-utterance waveform normalisation; by default read from the
        source's feature-extractor config.
    cache_dir : str, optional
        Hugging Face cache folder.
    hidden_state_zero : str
        Convention of hidden state 0 when a call does not name one:
        ``transformer_input`` (Hugging Face's ``hidden_states[0]``) or
        ``projection`` (DPHuBERT reference: the feature projection output
        before the positional conv and encoder LayerNorm), see
        :func:`~speechbrain_skill.lobes.student.model.check_hidden_state_zero`.

    Example
    -------
    >>> import tempfile
    >>> from speechbrain_skill.lobes.tiny_models import save_tiny_model
    >>> teacher = FrozenSSLTeacher(save_tiny_model(tempfile.mkdtemp()))
    >>> hidden, frame_lens = teacher(torch.randn(2, 16000), torch.tensor([1.0, 0.5]))
    >>> hidden.shape, frame_lens.tolist()
    (torch.Size([5, 2, 49, 32]), [49, 24])
    >>> teacher(torch.randn(1, 16000), num_layers=2)[0].shape
    torch.Size([3, 1, 49, 32])
    """

    def __init__(
        self,
        source,
        normalize_waveform=None,
        cache_dir=None,
        hidden_state_zero="transformer_input",
    ):
        super().__init__()
        self.hidden_state_zero = check_hidden_state_zero(hidden_state_zero)
        hf_model = load_hf_ssl_model(source, cache_dir=cache_dir)
        if normalize_waveform is None:
            normalize_waveform = (
                False
                if isinstance(source, torch.nn.Module)
                else waveform_normalization(source)
            )
        self.normalize_waveform = bool(normalize_waveform)
        self.hf_config = hf_model.config
        self.model = PrunableSSLEncoder.from_hf(
            hf_model, normalize_waveform=self.normalize_waveform, **NO_DROPOUT
        )
        for param in self.model.parameters():
            param.requires_grad_(False)
        self.model.eval()

    @property
    def config(self):
        """The Hugging Face config of the teacher."""
        return self.hf_config

    @property
    def num_hidden_states(self):
        """Number of hidden states: transformer layers + 1."""
        return self.model.num_hidden_states

    def train(self, mode=True):
        """Stay in eval mode whatever is asked: no dropout, no LayerDrop."""
        return super().train(False)

    def compile_model(self, **options):
        """``torch.compile`` the model's computation, inference mode staying outside.

        Arguments
        ---------
        **options
            Passed to
            :func:`~speechbrain_skill.training.compile.compile_forward`.

        Returns
        -------
        FrozenSSLTeacher
            Itself.
        """
        from speechbrain_skill.training.compile import compile_forward

        compile_forward(self.model, method="extract_features", **options)
        return self

    def frame_lengths(self, sample_lengths):
        """Frames produced for utterances of the given absolute sample lengths."""
        return self.model.frame_lengths(sample_lengths)

    def extract_features(
        self, wavs, wav_lens=None, layers=None, hidden_state_zero=None
    ):
        """Hidden states of selected layers, computing no deeper than needed.

        Arguments
        ---------
        wavs : torch.Tensor
            Waveforms (batch, time), 16 kHz.
        wav_lens : torch.Tensor, optional
            SpeechBrain relative lengths.
        layers : list of int, optional
            Hidden-state indices (negative ones count from the end); all by
            default.
        hidden_state_zero : str, optional
            Convention of state 0 (default: the teacher's own).

        Returns
        -------
        features : list of torch.Tensor
            One (batch, frames, dim) tensor per requested index.
        frame_lens : torch.Tensor
            Real frames per utterance.

        Example
        -------
        >>> import tempfile
        >>> from speechbrain_skill.lobes.tiny_models import save_tiny_model
        >>> teacher = FrozenSSLTeacher(save_tiny_model(tempfile.mkdtemp()))
        >>> feats, lens = teacher.extract_features(torch.randn(1, 8000), layers=[2])
        >>> len(feats), feats[0].shape, lens.tolist()
        (1, torch.Size([1, 24, 32]), [24])
        """
        with torch.inference_mode():
            states, frame_lens = self.model.extract_features(
                wavs, wav_lens, layers, hidden_state_zero or self.hidden_state_zero
            )
        # Copies made outside inference mode are ordinary tensors.
        return [state.clone() for state in states], frame_lens.clone()

    @torch.no_grad()
    def forward(self, wavs, wav_lens=None, num_layers=None, hidden_state_zero=None):
        """Compute the hidden states up to a depth.

        Arguments
        ---------
        wavs : torch.Tensor
            Waveforms (batch, time), 16 kHz.
        wav_lens : torch.Tensor, optional
            SpeechBrain relative lengths.
        num_layers : int, optional
            Run only the first transformer layers (default: all); states
            0 to ``num_layers`` are returned.
        hidden_state_zero : str, optional
            Convention of state 0 (default: the teacher's own).

        Returns
        -------
        hidden : torch.Tensor
            (num_layers + 1, batch, frames, dim).
        frame_lens : torch.Tensor
            Number of real frames per utterance.
        """
        count = self.num_hidden_states if num_layers is None else num_layers + 1
        with torch.inference_mode():
            states, frame_lens = self.model.extract_features(
                wavs,
                wav_lens,
                list(range(count)),
                hidden_state_zero or self.hidden_state_zero,
            )
        # Stacked outside inference mode: an ordinary tensor.
        return torch.stack(states, dim=0), frame_lens.clone()
