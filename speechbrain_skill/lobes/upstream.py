"""Frozen SSL upstream for SUPERB-style downstream recipes.

:class:`SSLUpstream` wraps a frozen speech SSL model and returns one feature
sequence per utterance: the softmax-weighted sum of all its hidden states
(learned weights, zero-initialised, so training starts from the plain mean),
or a single hidden state. The weights are the only trainable parameters, so
under DDP the wrapper holds nothing that can go unused.

Sources (see :func:`load_upstream_model`):

* a student directory written by
  :func:`~speechbrain_skill.lobes.student.save_student`;
* a Hugging Face WavLM / HuBERT / wav2vec 2.0: hub id, local
  ``save_pretrained`` directory or ``builtin:<name>``;
* ``random:<source>``: a randomly initialised model of the same shape as
  ``<source>`` (a student directory or an HF model), the floor of a comparison.
"""

import json
from pathlib import Path

import torch

from speechbrain_skill.lobes.frames import lengths_to_mask
from speechbrain_skill.lobes.hf_ssl import resolve_source, waveform_normalization
from speechbrain_skill.lobes.teacher import FrozenSSLTeacher

RANDOM_PREFIX = "random:"
STUDENT_ARCHITECTURE = "PrunableSSLStudent"


def is_student_dir(source):
    """Tell whether ``source`` is a directory saved by ``save_student``.

    A student's ``config.json`` names its ``architecture``; Hugging Face
    configs do not have that key.

    Arguments
    ---------
    source : str or os.PathLike
        Any upstream source.

    Returns
    -------
    bool

    Example
    -------
    >>> is_student_dir("microsoft/wavlm-base-plus")
    False
    """
    config = Path(str(source)) / "config.json"
    if not config.is_file():
        return False
    try:
        document = json.loads(config.read_text())
    except ValueError:
        return False
    return document.get("architecture") == STUDENT_ARCHITECTURE


def _random_hf_teacher(source, seed):
    from speechbrain_skill.lobes.hf_ssl import random_ssl_model

    model = random_ssl_model(source, seed)
    return FrozenSSLTeacher(model, normalize_waveform=waveform_normalization(source))


def _random_student(directory, seed):
    from speechbrain_skill.lobes.student import PrunableSSLStudent, StudentConfig

    document = json.loads((Path(directory) / "config.json").read_text())
    document.pop("architecture", None)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return PrunableSSLStudent(StudentConfig.from_dict(document))


def load_upstream_model(source, cache_dir=None, seed=0):
    """Load the SSL model behind an upstream source.

    Arguments
    ---------
    source : str or os.PathLike
        Student directory, HF hub id / local directory / ``builtin:<name>``,
        or ``random:<one of these>``.
    cache_dir : str, optional
        Hugging Face cache folder for hub downloads.
    seed : int
        Seed of the initialisation of a ``random:`` source.

    Returns
    -------
    model : torch.nn.Module
        ``model(wavs, wav_lens) -> (hidden [L+1, B, T, C], frame_lens)``.
    kind : str
        ``student``, ``hf:<model_type>``, ``random-student`` or
        ``random-hf:<model_type>``.

    Example
    -------
    >>> import tempfile
    >>> from speechbrain_skill.lobes.hf_ssl import save_tiny_model
    >>> path = save_tiny_model(tempfile.mkdtemp(), "hubert")
    >>> load_upstream_model(path)[1], load_upstream_model("random:" + path)[1]
    ('hf:hubert', 'random-hf:hubert')
    """
    source = str(source)
    random_init = source.startswith(RANDOM_PREFIX)
    if random_init:
        source = source[len(RANDOM_PREFIX) :]
    resolved = resolve_source(source)
    if is_student_dir(resolved):
        if random_init:
            return _random_student(resolved, seed), "random-student"
        from speechbrain_skill.lobes.student import load_student

        return load_student(resolved), "student"
    if random_init:
        teacher = _random_hf_teacher(resolved, seed)
        return teacher, f"random-hf:{teacher.config.model_type}"
    teacher = FrozenSSLTeacher(resolved, cache_dir=cache_dir)
    return teacher, f"hf:{teacher.config.model_type}"


class WeightedLayerSum(torch.nn.Module):
    """Softmax-weighted sum of stacked hidden states (SUPERB featurizer).

    Arguments
    ---------
    num_layers : int
        Number of hidden states combined.
    normalize_layers : bool
        Layer-normalise each hidden state (no affine) before summing.

    Example
    -------
    >>> weighting = WeightedLayerSum(3)
    >>> hidden = torch.stack([torch.zeros(1, 2, 4), torch.ones(1, 2, 4),
    ...                       2 * torch.ones(1, 2, 4)])
    >>> weighting(hidden)[0, 0].tolist()  # zero init: the plain mean
    [1.0, 1.0, 1.0, 1.0]
    >>> weighting.weights().tolist()
    [0.3333333432674408, 0.3333333432674408, 0.3333333432674408]
    """

    def __init__(self, num_layers, normalize_layers=False):
        super().__init__()
        self.logits = torch.nn.Parameter(torch.zeros(num_layers))
        self.normalize_layers = normalize_layers

    def weights(self):
        """The softmax weights (differentiable)."""
        return torch.softmax(self.logits, dim=0)

    def forward(self, hidden):
        """Combine hidden states (layers, batch, frames, dim) over layers."""
        if hidden.shape[0] != self.logits.shape[0]:
            raise ValueError(
                f"Expected {self.logits.shape[0]} hidden states, got {hidden.shape[0]}."
            )
        hidden = hidden.float()
        if self.normalize_layers:
            hidden = torch.nn.functional.layer_norm(hidden, hidden.shape[-1:])
        return torch.einsum("l,lbtc->btc", self.weights(), hidden)


class SSLUpstream(torch.nn.Module):
    """A frozen SSL model that outputs a weighted sum of its hidden states.

    The SSL model is always in eval mode, has ``requires_grad`` off and runs
    under ``torch.no_grad``. With ``layer=None`` the output is the
    softmax-weighted sum of all hidden states (the projected CNN output and
    every transformer layer); the weights (``self.weighting``) are the only
    trainable parameters. With an integer ``layer`` the output is that hidden
    state and nothing trains. Padding frames of the output are zero.

    Arguments
    ---------
    source : str or os.PathLike
        See :func:`load_upstream_model`.
    layer : int, optional
        Single-layer mode: the hidden-state index (0 = input of the first
        transformer layer, i = output of layer i, negative from the end).
    normalize_layers : bool
        Layer-normalise each hidden state before the weighted sum.
    cache_dir : str, optional
        Hugging Face cache folder.
    seed : int
        Initialisation seed of a ``random:`` source.

    Example
    -------
    >>> import tempfile
    >>> from speechbrain_skill.lobes.hf_ssl import save_tiny_model
    >>> upstream = SSLUpstream(save_tiny_model(tempfile.mkdtemp(), "wavlm"))
    >>> feats, lens = upstream(torch.randn(2, 16000), torch.tensor([1.0, 0.5]),
    ...                        return_lengths=True)
    >>> feats.shape, [round(x, 3) for x in lens.tolist()], upstream.output_size
    (torch.Size([2, 49, 32]), [1.0, 0.49], 32)
    >>> [n for n, p in upstream.named_parameters() if p.requires_grad]
    ['weighting.logits']
    """

    def __init__(
        self, source, layer=None, normalize_layers=False, cache_dir=None, seed=0
    ):
        super().__init__()
        self.source = str(source)
        self.model, self.kind = load_upstream_model(
            source, cache_dir=cache_dir, seed=seed
        )
        for param in self.model.parameters():
            param.requires_grad_(False)
        self.model.eval()
        count = self.num_hidden_states
        if layer is not None and not -count <= layer < count:
            raise ValueError(
                f"layer={layer} is out of range: {self.source} has {count} hidden "
                f"states (0..{count - 1})."
            )
        self.layer = None if layer is None else layer % count
        self.weighting = None
        if self.layer is None:
            self.weighting = WeightedLayerSum(count, normalize_layers)

    @property
    def num_hidden_states(self):
        """Hidden states of the SSL model: transformer layers + 1."""
        return self.model.num_hidden_states

    @property
    def output_size(self):
        """Feature dimension of the output."""
        config = self.model.config
        return config.hidden_size

    def num_params(self):
        """Parameters of the SSL model (the layer weights are not counted)."""
        return sum(p.numel() for p in self.model.parameters())

    def train(self, mode=True):
        """Switch the layer weights' mode; the SSL model stays in eval mode."""
        super().train(mode)
        self.model.eval()
        return self

    def layer_weights(self):
        """Weight of each hidden state in the output (one-hot in single-layer mode).

        Returns
        -------
        torch.Tensor
            (num_hidden_states,), detached, on the CPU.
        """
        if self.weighting is None:
            weights = torch.zeros(self.num_hidden_states)
            weights[self.layer] = 1.0
            return weights
        return self.weighting.weights().detach().float().cpu()

    def _hidden_states(self, wavs, wav_lens):
        if self.layer is not None and hasattr(self.model, "extract_features"):
            states, frame_lens = self.model.extract_features(
                wavs, wav_lens, layers=[self.layer]
            )
            return states[0], frame_lens
        hidden, frame_lens = self.model(wavs, wav_lens)
        if self.layer is not None:
            hidden = hidden[self.layer]
        return hidden, frame_lens

    def forward(self, wavs, wav_lens=None, return_lengths=False):
        """Compute the features of a batch.

        Arguments
        ---------
        wavs : torch.Tensor
            Waveforms (batch, time), 16 kHz.
        wav_lens : torch.Tensor, optional
            SpeechBrain relative lengths; None means no padding.
        return_lengths : bool
            Also return the relative frame lengths.

        Returns
        -------
        feats : torch.Tensor
            (batch, frames, output_size), float32, zero on padding frames.
        feat_lens : torch.Tensor
            Real frames / frames, per utterance (only with ``return_lengths``).
        """
        with torch.no_grad():
            hidden, frame_lens = self._hidden_states(wavs, wav_lens)
        feats = hidden.float() if self.weighting is None else self.weighting(hidden)
        num_frames = feats.shape[1]
        mask = lengths_to_mask(frame_lens.to(feats.device), num_frames)
        feats = feats * mask.unsqueeze(-1).to(feats.dtype)
        if not return_lengths:
            return feats
        return feats, frame_lens.to(feats.device).float() / max(num_frames, 1)

    def extra_repr(self):
        """Source and mode shown by ``print``."""
        mode = "weighted sum" if self.layer is None else f"layer {self.layer}"
        return f"source={self.source!r}, kind={self.kind}, {mode}"
