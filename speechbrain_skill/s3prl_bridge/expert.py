"""s3prl's upstream interface over any upstream source of this package."""

import math

import torch

from speechbrain_skill.lobes.upstream import load_upstream_model


def downsample_rate(model):
    """Samples per frame of an SSL model: the product of its conv strides.

    Arguments
    ---------
    model : torch.nn.Module
        A student (``config.conv_strides``) or a Hugging Face model / frozen
        teacher (``config.conv_stride``).

    Returns
    -------
    int

    Example
    -------
    >>> from speechbrain_skill.lobes.student import PrunableSSLEncoder, StudentConfig
    >>> config = StudentConfig.uniform("hubert", 32, 1, 4, 64, 16)
    >>> downsample_rate(PrunableSSLEncoder(config))
    320
    """
    config = model.config
    strides = getattr(config, "conv_strides", None) or config.conv_stride
    return math.prod(strides)


class UpstreamExpert(torch.nn.Module):
    """An s3prl upstream: waveforms in, every hidden state out.

    Hidden state 0 is the input of the first transformer layer, state i the
    output of layer i (Hugging Face ``output_hidden_states`` order, as s3prl's
    own HuBERT / WavLM experts). A batch is zero-padded to its longest
    waveform and the padding is masked, so every utterance gets the hidden
    states it has alone (on its real frames).

    Arguments
    ---------
    ckpt : str or os.PathLike
        Student folder, Hugging Face folder (e.g. an ``hf_stock/`` export) or
        ``builtin:<name>``; see
        :func:`~speechbrain_skill.lobes.upstream.load_upstream_model`.
    model_config : str, optional
        Ignored (s3prl's runner always passes it).
    **kwargs
        Other s3prl hub options (``refresh``...), ignored.

    Example
    -------
    >>> import tempfile
    >>> from speechbrain_skill.lobes.tiny_models import save_tiny_model
    >>> expert = UpstreamExpert(save_tiny_model(tempfile.mkdtemp(), "hubert"))
    >>> out = expert([torch.randn(16000), torch.randn(8000)])
    >>> len(out["hidden_states"]), tuple(out["hidden_states"][-1].shape)
    (5, (2, 49, 32))
    >>> expert.get_downsample_rates("hidden_states")
    320
    """

    def __init__(self, ckpt, model_config=None, **kwargs):
        super().__init__()
        if ckpt is None:
            raise ValueError(
                "The speechbrain_skill upstream needs a source: a student folder, "
                "a Hugging Face folder or builtin:<name> (s3prl: -k / path_or_url)."
            )
        self.source = str(ckpt)
        # Trainable form (HF models imported into the student code, same hidden
        # states), so that s3prl's --upstream_trainable can fine-tune it.
        self.model, self.kind = load_upstream_model(self.source, trainable=True)
        self.model.eval()
        self._downsample_rate = downsample_rate(self.model)

    def get_downsample_rates(self, key=None):
        """Samples per frame of every feature (s3prl interface)."""
        return self._downsample_rate

    def forward(self, wavs):
        """Hidden states of a list of 1-D 16 kHz waveforms.

        Arguments
        ---------
        wavs : list of torch.Tensor
            Waveforms of any lengths.

        Returns
        -------
        dict
            ``hidden_states``: list of (batch, frames, hidden), one per hidden
            state; ``last_hidden_state``: the last one.
        """
        lengths = torch.tensor([len(wav) for wav in wavs])
        padded = torch.nn.utils.rnn.pad_sequence(list(wavs), batch_first=True)
        param = next(self.model.parameters())
        padded = padded.to(device=param.device, dtype=param.dtype)
        wav_lens = lengths.float() / padded.shape[1]
        hidden, _ = self.model(padded, wav_lens.to(padded.device))
        states = list(hidden.unbind(0))
        return {"hidden_states": states, "last_hidden_state": states[-1]}
