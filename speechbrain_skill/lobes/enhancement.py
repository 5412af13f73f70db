"""RobustDistiller's enhancement head: a BLSTM mask on the noisy STFT magnitude.

The head reads the student's CNN features of the corrupted input, repeats
them to the 100 Hz STFT frame rate, runs a 3-layer BLSTM (256 units per
direction) and a linear layer with a sigmoid, and multiplies the resulting
mask with the noisy magnitude (n_fft 512, hop 160, window 400). The loss
(:class:`~speechbrain_skill.distillation.losses.EnhancementLoss`) is the L1
distance to the clean magnitude; it trains the student's CNN to keep what the
clean speech needs.

:class:`StudentFeatureTap` obtains those CNN features without a second pass
through the CNN: a forward hook keeps what the student computed for the
distillation loss.
"""

import weakref

import torch

from speechbrain_skill.lobes.frames import lengths_to_mask, relative_to_absolute

FEATURE_SOURCES = {"conv": "feature_extractor", "projection": "feature_projection"}


def enhancement_input_dim(teacher, features="conv"):
    """Width of the student features the enhancement head reads.

    Arguments
    ---------
    teacher : str, os.PathLike or torch.nn.Module
        The teacher source (hub id, local directory, ``builtin:<name>``) or a
        model with a ``config`` (teacher or student): the student starts as a
        copy of the teacher.
    features : str
        ``conv`` (the CNN output, as in RobustDistiller) or ``projection``
        (after the feature projection: ``hidden_size`` wide, which survives
        structured pruning of the conv channels).

    Returns
    -------
    int

    Example
    -------
    >>> import tempfile
    >>> from speechbrain_skill.lobes.tiny_models import save_tiny_model
    >>> source = save_tiny_model(tempfile.mkdtemp(), "hubert")
    >>> enhancement_input_dim(source), enhancement_input_dim(source, "projection")
    (16, 32)
    """
    if features not in FEATURE_SOURCES:
        raise ValueError(
            f"features must be one of {sorted(FEATURE_SOURCES)}, got '{features}'."
        )
    if hasattr(teacher, "config"):
        config = teacher.config
    else:
        from speechbrain_skill.lobes.hf_ssl import load_hf_ssl_config

        config = load_hf_ssl_config(teacher)
    if features == "projection":
        return int(config.hidden_size)
    channels = getattr(config, "conv_channels", None) or config.conv_dim
    return int(channels[-1])


def stft_frame_lengths(sample_lengths, hop_length):
    """Frames of a centred STFT for the given sample lengths.

    Example
    -------
    >>> stft_frame_lengths(torch.tensor([16000, 159]), 160).tolist()
    [101, 1]
    """
    return torch.div(sample_lengths, hop_length, rounding_mode="floor") + 1


class EnhancementHead(torch.nn.Module):
    """BLSTM mask estimator on the noisy magnitude spectrogram.

    Arguments
    ---------
    input_dim : int
        Width of the student features (see :func:`enhancement_input_dim`).
    hidden_size : int
        BLSTM units per direction.
    num_layers : int
        BLSTM layers.
    n_fft, hop_length, win_length : int
        STFT settings (hop 160 = 10 ms at 16 kHz: twice the feature rate).
    dropout : float
        Dropout between BLSTM layers.

    Example
    -------
    >>> head = EnhancementHead(16, hidden_size=8, num_layers=1)
    >>> wavs = torch.randn(2, 16000)
    >>> features = torch.randn(2, 49, 16)
    >>> enhanced, frame_lens = head(features, wavs, torch.tensor([1.0, 0.5]))
    >>> enhanced.shape == head.magnitude(wavs).shape, frame_lens.tolist()
    (True, [101, 51])
    """

    def __init__(
        self,
        input_dim,
        hidden_size=256,
        num_layers=3,
        n_fft=512,
        hop_length=160,
        win_length=400,
        dropout=0.0,
    ):
        super().__init__()
        self.input_dim = int(input_dim)
        self.n_fft, self.hop_length, self.win_length = n_fft, hop_length, win_length
        self.blstm = torch.nn.LSTM(
            self.input_dim,
            hidden_size,
            num_layers=num_layers,
            batch_first=True,
            bidirectional=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.mask = torch.nn.Linear(2 * hidden_size, n_fft // 2 + 1)
        self.register_buffer("window", torch.hann_window(win_length), persistent=False)

    def magnitude(self, wavs):
        """STFT magnitude (batch, frames, n_fft // 2 + 1), centred frames, fp32."""
        spec = torch.stft(
            wavs.float(),
            self.n_fft,
            hop_length=self.hop_length,
            win_length=self.win_length,
            window=self.window.float(),
            center=True,
            return_complex=True,
        )
        return spec.abs().transpose(1, 2)

    def forward(self, features, noisy_wavs, wav_lens=None):
        """Enhanced magnitude of the noisy input.

        Arguments
        ---------
        features : torch.Tensor
            Student features of ``noisy_wavs``, (batch, feature_frames, input_dim).
        noisy_wavs : torch.Tensor
            The corrupted waveforms (batch, time).
        wav_lens : torch.Tensor, optional
            SpeechBrain relative lengths.

        Returns
        -------
        enhanced : torch.Tensor
            (batch, stft_frames, n_fft // 2 + 1), the mask times the noisy magnitude.
        frame_lens : torch.Tensor
            Real STFT frames per utterance.
        """
        if features.shape[-1] != self.input_dim:
            raise ValueError(
                f"The enhancement head reads {self.input_dim}-wide features, got "
                f"{features.shape[-1]}: were the student's last conv channels "
                "pruned? Read the projected features (enhancement_features: "
                "projection) instead."
            )
        noisy = self.magnitude(noisy_wavs)
        frames = noisy.shape[1]
        if wav_lens is None:
            wav_lens = torch.ones(noisy_wavs.shape[0], device=noisy_wavs.device)
        samples = relative_to_absolute(wav_lens, noisy_wavs.shape[1])
        frame_lens = stft_frame_lengths(samples, self.hop_length).clamp(1, frames)
        upsampled = self._to_stft_rate(features, frames)
        packed = torch.nn.utils.rnn.pack_padded_sequence(
            upsampled, frame_lens.cpu(), batch_first=True, enforce_sorted=False
        )
        hidden, _ = self.blstm(packed)
        hidden, _ = torch.nn.utils.rnn.pad_packed_sequence(
            hidden, batch_first=True, total_length=frames
        )
        mask = torch.sigmoid(self.mask(hidden))
        enhanced = mask.float() * noisy
        valid = lengths_to_mask(frame_lens.to(enhanced.device), frames)
        return enhanced * valid.unsqueeze(-1), frame_lens.to(enhanced.device)

    def _to_stft_rate(self, features, frames):
        """Repeat each 20 ms feature frame twice and match the STFT frame count."""
        repeated = features.repeat_interleave(2, dim=1)[:, :frames]
        missing = frames - repeated.shape[1]
        if missing > 0:
            last = repeated[:, -1:].expand(-1, missing, -1)
            repeated = torch.cat([repeated, last], dim=1)
        return repeated


class StudentFeatureTap:
    """Keep the CNN features a student computed in its last forward pass.

    Forward hooks on the student record the input waveforms and the output of
    its feature extractor (``conv``) or feature projection (``projection``).
    :meth:`features` returns them when they belong to the given waveforms,
    and otherwise runs the student once more (the first batch after the
    tap is attached, e.g. at the start of a stage).

    Arguments
    ---------
    source : str
        ``conv`` or ``projection`` (see :func:`enhancement_input_dim`).

    Example
    -------
    >>> from speechbrain_skill.lobes.student import PrunableSSLEncoder, StudentConfig
    >>> student = PrunableSSLEncoder(StudentConfig.uniform("hubert", 32, 1, 4, 64, 16))
    >>> tap = StudentFeatureTap("conv")
    >>> wavs = torch.randn(2, 16000)
    >>> tap.features(student, wavs).shape
    torch.Size([2, 49, 16])
    >>> _ = student(wavs)  # the hooks are attached now: no extra pass
    >>> tap.features(student, wavs).shape
    torch.Size([2, 49, 16])
    """

    def __init__(self, source="conv"):
        if source not in FEATURE_SOURCES:
            raise ValueError(
                f"source must be one of {sorted(FEATURE_SOURCES)}, got '{source}'."
            )
        self.source = source
        self._student = None
        self._handles = []
        self._input_key = None
        self._captured = None

    def attach(self, student):
        """Hook ``student`` (and unhook the previous one); idempotent."""
        if self._student is not None and self._student() is student:
            return
        for handle in self._handles:
            handle.remove()
        submodule = getattr(student, FEATURE_SOURCES[self.source])
        self._handles = [
            student.register_forward_pre_hook(self._record_input),
            submodule.register_forward_hook(self._record_output),
        ]
        self._student = weakref.ref(student)
        self._input_key = self._captured = None

    def _record_input(self, module, args):
        self._input_key = _tensor_key(args[0])
        self._captured = None

    def _record_output(self, module, args, output):
        self._captured = output.transpose(1, 2) if self.source == "conv" else output

    def features(self, student, wavs, wav_lens=None):
        """Features (batch, frames, dim) of ``student`` for ``wavs``.

        Arguments
        ---------
        student : PrunableSSLEncoder
            The (unwrapped) student.
        wavs : torch.Tensor
            The waveforms the student was (or is to be) run on.
        wav_lens : torch.Tensor, optional
            Relative lengths, for the extra pass when one is needed.

        Returns
        -------
        torch.Tensor
        """
        self.attach(student)
        if self._captured is None or self._input_key != _tensor_key(wavs):
            student(wavs, wav_lens)
        features, self._captured = self._captured, None
        return features


def _tensor_key(tensor):
    return (tensor.data_ptr(), tuple(tensor.shape), tensor.device)
