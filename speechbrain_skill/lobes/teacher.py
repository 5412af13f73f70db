"""The frozen teacher: a Hugging Face SSL model that returns all hidden states."""

import torch

from speechbrain_skill.lobes.frames import (
    conv_output_lengths,
    lengths_to_mask,
    normalize_waveforms,
    relative_to_absolute,
)
from speechbrain_skill.lobes.hf_ssl import load_hf_ssl_model, waveform_normalization


class FrozenSSLTeacher(torch.nn.Module):
    """A frozen WavLM / HuBERT / wav2vec 2.0 that returns its (L+1) hidden states.

    The model is always in eval mode (``train()`` cannot switch it), has no
    gradients, and runs under ``torch.no_grad``. Padding is passed to the model
    as an attention mask built from SpeechBrain relative lengths.

    Arguments
    ---------
    source : str or transformers.PreTrainedModel
        Hub id, local directory, ``builtin:<name>`` or a loaded model.
    normalize_waveform : bool, optional
        Per-utterance waveform normalisation; by default read from the
        source's feature-extractor config.
    cache_dir : str, optional
        Hugging Face cache folder.

    Example
    -------
    >>> import tempfile
    >>> from speechbrain_skill.lobes.hf_ssl import save_tiny_model
    >>> teacher = FrozenSSLTeacher(save_tiny_model(tempfile.mkdtemp()))
    >>> hidden, frame_lens = teacher(torch.randn(2, 16000), torch.tensor([1.0, 0.5]))
    >>> hidden.shape, frame_lens.tolist()
    (torch.Size([5, 2, 49, 32]), [49, 24])
    """

    def __init__(self, source, normalize_waveform=None, cache_dir=None):
        super().__init__()
        self.model = load_hf_ssl_model(source, cache_dir=cache_dir)
        if normalize_waveform is None:
            normalize_waveform = (
                False
                if isinstance(source, torch.nn.Module)
                else waveform_normalization(source)
            )
        self.normalize_waveform = normalize_waveform
        for param in self.model.parameters():
            param.requires_grad_(False)
        self.model.eval()

    @property
    def config(self):
        """The Hugging Face config of the teacher."""
        return self.model.config

    @property
    def num_hidden_states(self):
        """Number of hidden states returned: transformer layers + 1."""
        return self.model.config.num_hidden_layers + 1

    def train(self, mode=True):
        """Stay in eval mode whatever is asked: no dropout, no LayerDrop."""
        return super().train(False)

    def frame_lengths(self, sample_lengths):
        """Frames produced for utterances of the given absolute sample lengths."""
        return conv_output_lengths(
            sample_lengths, self.config.conv_kernel, self.config.conv_stride
        )

    @torch.no_grad()
    def forward(self, wavs, wav_lens=None):
        """Compute all hidden states.

        Arguments
        ---------
        wavs : torch.Tensor
            Waveforms (batch, time), 16 kHz.
        wav_lens : torch.Tensor, optional
            SpeechBrain relative lengths.

        Returns
        -------
        hidden : torch.Tensor
            (num_layers + 1, batch, frames, dim).
        frame_lens : torch.Tensor
            Number of real frames per utterance.
        """
        lengths = relative_to_absolute(
            wav_lens, wavs.shape[1], batch_size=wavs.shape[0], device=wavs.device
        ).to(wavs.device)
        if self.normalize_waveform:
            wavs = normalize_waveforms(wavs, lengths)
        attention_mask = lengths_to_mask(lengths, wavs.shape[1]).long()
        out = self.model(wavs, attention_mask=attention_mask, output_hidden_states=True)
        hidden = torch.stack(out.hidden_states, dim=0)
        frame_lens = self.frame_lengths(lengths).clamp(max=hidden.shape[2])
        return hidden, frame_lens
