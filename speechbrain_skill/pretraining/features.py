"""Frame features for the k-means labels, one vector per model frame (20 ms).

Iteration 1 of HuBERT clusters MFCCs; iteration 2 clusters hidden states of
the iteration-1 model. Both featurisers here return exactly one row per frame
of the WavLM/HuBERT conv front-end (receptive field 400 samples, hop 320), so
labels line up with the model outputs without resampling: the MFCC window is
25 ms (400 samples) and its shift 20 ms (320 samples), edges snipped, which
gives ``1 + (n - 400) // 320`` frames, the front-end's count.
"""

import torch

from speechbrain_skill.data.audio import SAMPLE_RATE

MFCC_WINDOW_MS = 25.0
MFCC_SHIFT_MS = 20.0


def normalize_utterance(features, eps=1e-5):
    """Mean and variance normalisation over the frames of one utterance (CMVN).

    Arguments
    ---------
    features : torch.Tensor
        (frames, dim).
    eps : float
        Floor of the standard deviation.

    Returns
    -------
    torch.Tensor

    Example
    -------
    >>> x = normalize_utterance(torch.tensor([[1.0], [3.0]]))
    >>> x.flatten().tolist()
    [-1.0, 1.0]
    """
    mean = features.mean(dim=0, keepdim=True)
    std = features.std(dim=0, unbiased=False, keepdim=True).clamp(min=eps)
    return (features - mean) / std


class MFCCFeaturizer:
    """13 MFCCs + deltas + delta-deltas (39 dims) on 20 ms frames (Kaldi style).

    Computed with ``torchaudio.compliance.kaldi.mfcc`` (as HuBERT's reference
    labelling does) with a 25 ms window and a 20 ms shift instead of 10 ms.

    Arguments
    ---------
    num_ceps : int
        Cepstral coefficients.
    deltas : bool
        Append first and second time derivatives (HuBERT does).
    normalize : bool
        Per-utterance CMVN; it removes level differences between recordings,
        which otherwise dominate the first coefficient and the clusters.
    sample_rate : int
        Audio rate.

    Example
    -------
    >>> feats = MFCCFeaturizer()(torch.randn(16000))
    >>> feats.shape
    torch.Size([49, 39])
    """

    def __init__(
        self, num_ceps=13, deltas=True, normalize=True, sample_rate=SAMPLE_RATE
    ):
        self.num_ceps = num_ceps
        self.deltas = deltas
        self.normalize = normalize
        self.sample_rate = sample_rate

    @property
    def dim(self):
        """Feature dimension."""
        return self.num_ceps * (3 if self.deltas else 1)

    def describe(self):
        """Settings as a dict (recorded next to the labels)."""
        return dict(
            kind="mfcc",
            num_ceps=self.num_ceps,
            deltas=self.deltas,
            normalize=self.normalize,
        )

    @torch.no_grad()
    def __call__(self, wav):
        """Features of one waveform (samples,) -> (frames, dim)."""
        from torchaudio.compliance import kaldi
        from torchaudio.functional import compute_deltas

        mfcc = kaldi.mfcc(
            wav.float().reshape(1, -1).cpu(),
            sample_frequency=self.sample_rate,
            frame_length=MFCC_WINDOW_MS,
            frame_shift=MFCC_SHIFT_MS,
            num_ceps=self.num_ceps,
            use_energy=False,
            dither=0.0,
        )
        if self.deltas:
            first = compute_deltas(mfcc.T)
            second = compute_deltas(first)
            mfcc = torch.cat([mfcc, first.T, second.T], dim=1)
        if self.normalize:
            mfcc = normalize_utterance(mfcc)
        return mfcc


class HiddenStateFeaturizer:
    """Hidden states of one layer of a trained SSL model (HuBERT iteration 2).

    Arguments
    ---------
    source : str or transformers.PreTrainedModel
        Hub id, local directory, ``builtin:<name>`` or a loaded model.
    layer : int, optional
        Hidden state index (0 = projected CNN output, i = transformer layer i).
        Default: the middle layer, ``num_layers // 2`` (HuBERT Base used
        layer 6 of 12).
    normalize : bool
        Per-utterance CMVN of the hidden states.
    device : str
        Device of the model.

    Example
    -------
    >>> import tempfile
    >>> from speechbrain_skill.lobes.tiny_models import save_tiny_model
    >>> featurizer = HiddenStateFeaturizer(save_tiny_model(tempfile.mkdtemp()))
    >>> featurizer.layer, featurizer(torch.randn(16000)).shape
    (2, torch.Size([49, 32]))
    """

    def __init__(self, source, layer=None, normalize=False, device="cpu"):
        from speechbrain_skill.lobes.teacher import FrozenSSLTeacher

        self.teacher = FrozenSSLTeacher(source).to(device)
        num_layers = self.teacher.num_hidden_states - 1
        self.layer = num_layers // 2 if layer is None else int(layer)
        if not 0 <= self.layer <= num_layers:
            raise ValueError(
                f"label layer {self.layer} does not exist: the model has hidden "
                f"states 0..{num_layers}."
            )
        self.source = str(source)
        self.normalize = normalize
        self.device = device

    @property
    def dim(self):
        """Feature dimension."""
        return self.teacher.config.hidden_size

    def describe(self):
        """Settings as a dict (recorded next to the labels)."""
        return dict(
            kind="hidden",
            source=self.source,
            layer=self.layer,
            normalize=self.normalize,
        )

    @torch.no_grad()
    def __call__(self, wav):
        """Features of one waveform (samples,) -> (frames, dim)."""
        hidden, _ = self.teacher(wav.reshape(1, -1).float().to(self.device))
        features = hidden[self.layer, 0].float().cpu()
        if self.normalize:
            features = normalize_utterance(features)
        return features


def make_featurizer(kind="mfcc", source=None, layer=None, normalize=True, device="cpu"):
    """Build the label featuriser named in the recipe yaml.

    Arguments
    ---------
    kind : str
        ``mfcc`` (iteration 1) or ``hidden`` (iteration 2).
    source : str, optional
        Model for ``hidden`` (e.g. the iteration-1 export directory).
    layer : int, optional
        Hidden state for ``hidden``; None means the middle layer.
    normalize : bool
        Per-utterance CMVN.
    device : str
        Device for ``hidden``.

    Returns
    -------
    MFCCFeaturizer or HiddenStateFeaturizer

    Example
    -------
    >>> make_featurizer("mfcc").dim
    39
    """
    if kind == "mfcc":
        return MFCCFeaturizer(normalize=normalize)
    if kind == "hidden":
        if not source:
            raise ValueError(
                "label_features=hidden needs label_model: the model whose hidden "
                "states are clustered (e.g. the iteration-1 export folder)."
            )
        return HiddenStateFeaturizer(
            source, layer=layer, normalize=normalize, device=device
        )
    raise ValueError(f"Unknown label features '{kind}': use 'mfcc' or 'hidden'.")
