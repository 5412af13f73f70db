"""SSL upstream for the downstream recipes: frozen (SUPERB style) or fine-tuned.

:class:`SSLUpstream` wraps a speech SSL model and returns one feature
sequence per utterance: the softmax-weighted sum of all its hidden states
(learned weights, zero-initialised, so training starts from the plain mean),
or a single hidden state. Frozen (the default), the weights are the only
trainable parameters, so under DDP the wrapper holds nothing that can go
unused. With ``freeze=False`` the SSL model is fine-tuned too, optionally
with its CNN feature extractor kept fixed (SpeechBrain's
``freeze_feature_extractor``); the Brain gives it its own optimizer.

Sources (see :func:`load_upstream_model`):

* a student directory written by
  :func:`~speechbrain_skill.lobes.student.save_student`;
* a Hugging Face WavLM / HuBERT / wav2vec 2.0: hub id, local
  ``save_pretrained`` directory or ``builtin:<name>``;
* ``random:<source>``: a randomly initialised model of the same shape as
  ``<source>`` (a student directory or an HF model), the floor of a comparison;
* a ``.onnx`` file written by the exporter (``onnx`` or ``onnx_int8``), run
  in onnxruntime (:mod:`~speechbrain_skill.lobes.onnx_upstream`; frozen only).
"""

import contextlib
import json
import re
from pathlib import Path

import torch

from speechbrain_skill.lobes.frames import lengths_to_mask
from speechbrain_skill.lobes.hf_ssl import resolve_source, waveform_normalization
from speechbrain_skill.lobes.onnx_upstream import OnnxSSLModel, is_onnx_file
from speechbrain_skill.lobes.teacher import FrozenSSLTeacher
from speechbrain_skill.training.stage_records import fingerprint, folder_fingerprint

RANDOM_PREFIX = "random:"
STUDENT_ARCHITECTURE = "PrunableSSLEncoder"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")


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
    from speechbrain_skill.lobes.student import PrunableSSLEncoder, StudentConfig

    document = json.loads((Path(directory) / "config.json").read_text())
    document.pop("architecture", None)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return PrunableSSLEncoder(StudentConfig.from_dict(document))


def load_upstream_model(source, cache_dir=None, seed=0, trainable=False):
    """Load the SSL model behind an upstream source.

    Arguments
    ---------
    source : str or os.PathLike
        Student directory, HF hub id / local directory / ``builtin:<name>``,
        ``random:<one of these>``, or a student's ``.onnx`` export.
    cache_dir : str, optional
        Hugging Face cache folder for hub downloads.
    seed : int
        Seed of the initialisation of a ``random:`` source.
    trainable : bool
        Return a model that can be fine-tuned: a Hugging Face model is
        imported into the student implementation
        (:meth:`~speechbrain_skill.lobes.student.PrunableSSLEncoder.from_hf`,
        the same hidden states), which runs with gradients, instead of the
        frozen teacher wrapper. Student directories are students already.

    Returns
    -------
    model : torch.nn.Module
        ``model(wavs, wav_lens) -> (hidden [L+1, B, T, C], frame_lens)``.
    kind : str
        ``student``, ``hf:<model_type>``, ``random-student``,
        ``random-hf:<model_type>`` or ``onnx``.

    Example
    -------
    >>> import tempfile
    >>> from speechbrain_skill.lobes.tiny_models import save_tiny_model
    >>> path = save_tiny_model(tempfile.mkdtemp(), "hubert")
    >>> load_upstream_model(path)[1], load_upstream_model("random:" + path)[1]
    ('hf:hubert', 'random-hf:hubert')
    >>> type(load_upstream_model(path, trainable=True)[0]).__name__
    'PrunableSSLEncoder'
    """
    source = str(source)
    if is_onnx_file(source):
        if trainable or source.startswith(RANDOM_PREFIX):
            raise ValueError(
                f"{source}: an ONNX graph can only be a frozen upstream "
                "(freeze_upstream: True), not random: or fine-tuned."
            )
        return OnnxSSLModel(source), "onnx"
    random_init = source.startswith(RANDOM_PREFIX)
    if random_init:
        source = source[len(RANDOM_PREFIX) :]
    resolved = resolve_source(source)
    if is_student_dir(resolved):
        if random_init:
            return _random_student(resolved, seed), "random-student"
        from speechbrain_skill.lobes.student import load_student

        return load_student(resolved), "student"
    if trainable:
        from speechbrain_skill.lobes.hf_ssl import load_hf_ssl_model, random_ssl_model
        from speechbrain_skill.lobes.student import PrunableSSLEncoder

        if random_init:
            hf_model = random_ssl_model(resolved, seed)
        else:
            hf_model = load_hf_ssl_model(resolved, cache_dir=cache_dir)
        model = PrunableSSLEncoder.from_hf(
            hf_model, normalize_waveform=waveform_normalization(resolved)
        )
        prefix = "random-hf" if random_init else "hf"
        return model, f"{prefix}:{hf_model.config.model_type}"
    if random_init:
        teacher = _random_hf_teacher(resolved, seed)
        return teacher, f"random-hf:{teacher.config.model_type}"
    teacher = FrozenSSLTeacher(resolved, cache_dir=cache_dir)
    return teacher, f"hf:{teacher.config.model_type}"


def upstream_key(source, *settings):
    """Name of the results folder of a downstream run: the upstream's name + a digest.

    The digest covers the source, the given settings (e.g. the layer used)
    and, for a local directory, its config and weight files (names, sizes,
    modification times): two upstreams, or a student retrained in place,
    never share a results folder.

    Arguments
    ---------
    source : str or os.PathLike
        See :func:`load_upstream_model`.
    *settings
        Other json-serialisable values that make a run different.

    Returns
    -------
    str
        E.g. ``wavlm-base-plus-1a2b3c4d``.

    Example
    -------
    >>> upstream_key("microsoft/wavlm-base-plus", None)[:16]
    'wavlm-base-plus-'
    >>> key = upstream_key("builtin:tiny-wavlm", None)
    >>> key.startswith("tiny-wavlm-"), key == upstream_key("builtin:tiny-wavlm", 3)
    (True, False)
    >>> upstream_key("random:builtin:tiny-wavlm", None).startswith("random-tiny-wavlm-")
    True
    """
    source = str(source)
    plain = source.removeprefix(RANDOM_PREFIX)
    identity = {"source": source, "settings": list(settings)}
    local = Path(resolve_source(plain))
    name = Path(plain.split(":")[-1].rstrip("/")).name or "upstream"
    if is_onnx_file(plain):
        identity["path"] = str(local.resolve())
        identity["files"] = {local.name: folder_fingerprint(local)}
        name = f"{local.parent.name}-{local.stem}"  # onnx-student, onnx_int8-student
    elif local.is_dir():
        identity["path"] = str(local.resolve())
        identity["files"] = {
            path.name: folder_fingerprint(path)
            for path in sorted(local.iterdir())
            if path.name == "config.json" or path.suffix in WEIGHT_SUFFIXES
        }
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", name)
    if source.startswith(RANDOM_PREFIX):
        name = f"random-{name}"
    return f"{name}-{fingerprint(identity)[:8]}"


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
    """An SSL model that outputs a weighted sum of its hidden states.

    Frozen (``freeze=True``), the SSL model has ``requires_grad`` off and runs
    under ``torch.no_grad``. With ``layer=None`` the output is the
    softmax-weighted sum of all hidden states (the projected CNN output and
    every transformer layer); the weights (``self.weighting``) are then the
    only trainable parameters. With an integer ``layer`` the output is that
    hidden state and nothing trains. Padding frames of the output are zero.

    With ``freeze=False`` the SSL model is fine-tuned as well: its parameters
    that shape the output (:meth:`finetuned_parameters`: not the pruning
    gates, not the layers above a single ``layer``, not the CNN feature
    extractor with ``freeze_cnn=True``) train, with gradients. The SSL model
    stays in eval mode either way: no dropout, no LayerDrop (which would
    break DDP and the layer weights), no SpecAugment-style masking.

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
    freeze : bool
        Keep the SSL model fixed (SUPERB); False fine-tunes it.
    freeze_cnn : bool
        With ``freeze=False``: keep the CNN feature extractor fixed.

    Example
    -------
    >>> import tempfile
    >>> from speechbrain_skill.lobes.tiny_models import save_tiny_model
    >>> upstream = SSLUpstream(save_tiny_model(tempfile.mkdtemp(), "wavlm"))
    >>> feats, lens = upstream(torch.randn(2, 16000), torch.tensor([1.0, 0.5]),
    ...                        return_lengths=True)
    >>> feats.shape, [round(x, 3) for x in lens.tolist()], upstream.output_size
    (torch.Size([2, 49, 32]), [1.0, 0.49], 32)
    >>> [n for n, p in upstream.named_parameters() if p.requires_grad]
    ['weighting.logits']
    >>> tuned = SSLUpstream(upstream.source, freeze=False, freeze_cnn=True)
    >>> len(tuned.finetuned_parameters()) > 0
    True
    >>> any(p.requires_grad for p in tuned.model.feature_extractor.parameters())
    False
    """

    def __init__(
        self,
        source,
        layer=None,
        normalize_layers=False,
        cache_dir=None,
        seed=0,
        freeze=True,
        freeze_cnn=False,
    ):
        super().__init__()
        self.source = str(source)
        self.freeze = freeze
        self.freeze_cnn = freeze_cnn
        self.model, self.kind = load_upstream_model(
            source, cache_dir=cache_dir, seed=seed, trainable=not freeze
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
        self._finetuned = [] if freeze else self._parameters_that_shape_the_output()
        for param in self._finetuned:
            param.requires_grad_(True)

    def _parameters_that_shape_the_output(self):
        """Main SSL parameters that get a gradient from the output (CNN optional).

        Found with one backward pass on a second of noise, so that nothing
        trainable goes unused (DDP requires it): the layers above a single
        ``layer``, the gates and any parameter the forward pass skips stay fixed.
        """
        candidates = list(self.model.main_parameters())
        if self.freeze_cnn:
            cnn = {id(p) for p in self.model.feature_extractor.parameters()}
            candidates = [p for p in candidates if id(p) not in cnn]
        for param in candidates:
            param.requires_grad_(True)
        noise = torch.randn(1, 16000, generator=torch.Generator().manual_seed(0))
        hidden, _ = self._hidden_states(noise, None)
        hidden.float().sum().backward()
        used = [p for p in candidates if p.grad is not None]
        for param in candidates:
            param.requires_grad_(False)
            param.grad = None
        return used

    def finetuned_parameters(self):
        """The SSL-model parameters that train (empty when frozen).

        Returns
        -------
        list of torch.nn.Parameter
        """
        return list(self._finetuned)

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
        if hasattr(self.model, "parameter_count"):  # an ONNX graph's weights
            return self.model.parameter_count
        return sum(p.numel() for p in self.model.parameters())

    def train(self, mode=True):
        """Switch the layer weights' mode; the SSL model stays in eval mode.

        Fine-tuned or not: dropout, LayerDrop and masking stay off.
        """
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
        frozen = torch.no_grad() if self.freeze else contextlib.nullcontext()
        with frozen:
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
        tuning = "frozen" if self.freeze else "fine-tuned"
        if not self.freeze and self.freeze_cnn:
            tuning += " (CNN frozen)"
        return f"source={self.source!r}, kind={self.kind}, {mode}, {tuning}"
