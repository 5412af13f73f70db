"""SpeechBrain inference of a student folder, in ``speechbrain.inference`` style.

An exported student folder holds a ``hyperparams.yaml`` (written by
:func:`hyperparams_yaml`) that declares the student from its per-layer config
and a ``Pretrainer`` that loads ``model.safetensors``. It loads the way
SpeechBrain's hub models do::

    from speechbrain_skill.export.inference import SSLStudentEncoder
    encoder = SSLStudentEncoder.from_hparams(source="results/skill_wavlm/1986/student")
    hidden, frame_lens = encoder.encode_file("utterance.flac")

``hidden`` stacks all hidden states (num_layers + 1, batch, frames, hidden),
indexed like Hugging Face ``output_hidden_states``.
"""

import torch
import yaml
from speechbrain.inference.interfaces import Pretrained

from speechbrain_skill.data.audio import read_audio
from speechbrain_skill.export.folder import WEIGHTS_NAME
from speechbrain_skill.lobes.hf_ssl import SAMPLE_RATE

HPARAMS_NAME = "hyperparams.yaml"
FOLDER_KEY = "model_folder"


def load_safetensors(module, path):
    """Pretrainer hook: load a ``model.safetensors`` state dict into ``module``.

    Arguments
    ---------
    module : torch.nn.Module
        The module built by the yaml.
    path : str or os.PathLike
        The weights file.

    Example
    -------
    >>> import os, tempfile
    >>> from safetensors.torch import save_file
    >>> path = os.path.join(tempfile.mkdtemp(), "w.safetensors")
    >>> save_file({"weight": torch.ones(1, 1), "bias": torch.zeros(1)}, path)
    >>> layer = torch.nn.Linear(1, 1)
    >>> load_safetensors(layer, path)
    >>> layer.weight.item()
    1.0
    """
    from safetensors.torch import load_file

    module.load_state_dict(load_file(str(path)), strict=True)


def hyperparams_yaml(student_config):
    """The ``hyperparams.yaml`` of a student folder.

    Arguments
    ---------
    student_config : StudentConfig
        The student's architecture (written inline, per layer).

    Returns
    -------
    str

    Example
    -------
    >>> from speechbrain_skill.lobes.student import StudentConfig
    >>> text = hyperparams_yaml(StudentConfig.uniform("hubert", 32, 1, 4, 64, 16))
    >>> "pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer" in text
    True
    """
    fields = yaml.safe_dump(
        student_config.to_dict(), default_flow_style=None, sort_keys=True, width=80
    )
    fields = "".join(f"    {line}\n" for line in fields.splitlines())
    return f"""# SpeechBrain inference of a speechbrain-skill student (written by
# speechbrain_skill.export). Load it with:
#   from speechbrain_skill.export.inference import SSLStudentEncoder
#   encoder = SSLStudentEncoder.from_hparams(source="<this folder>")
#   hidden, frame_lens = encoder.encode_file("utterance.flac")

# The folder holding this file; from_hparams sets it.
{FOLDER_KEY}: !PLACEHOLDER
sample_rate: {SAMPLE_RATE}

student_config: !new:speechbrain_skill.lobes.student.StudentConfig
{fields}
encoder: !new:speechbrain_skill.lobes.student.PrunableSSLEncoder
    config: !ref <student_config>

modules:
    encoder: !ref <encoder>

pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
    loadables:
        encoder: !ref <encoder>
    paths:
        encoder: !ref <{FOLDER_KEY}>/{WEIGHTS_NAME}
    custom_hooks:
        encoder: !name:speechbrain_skill.export.inference.load_safetensors
"""


class SSLStudentEncoder(Pretrained):
    """All hidden states of a student, loaded like a SpeechBrain hub model.

    Arguments
    ---------
    *args, **kwargs
        See ``speechbrain.inference.interfaces.Pretrained``; use
        :meth:`from_hparams`.

    Example
    -------
    >>> import tempfile
    >>> from speechbrain_skill.lobes.student import (
    ...     PrunableSSLEncoder, StudentConfig, save_student)
    >>> student = PrunableSSLEncoder(StudentConfig.uniform("hubert", 32, 1, 4, 64, 16))
    >>> folder = save_student(student, tempfile.mkdtemp())
    >>> _ = open(f"{folder}/hyperparams.yaml", "w").write(
    ...     hyperparams_yaml(student.config))
    >>> encoder = SSLStudentEncoder.from_hparams(source=folder)
    >>> hidden, lens = encoder.encode_batch(torch.randn(2, 8000),
    ...                                     torch.tensor([1.0, 0.5]))
    >>> hidden.shape, lens.tolist()
    (torch.Size([2, 2, 24, 32]), [24, 12])
    """

    MODULES_NEEDED = ["encoder"]
    HPARAMS_NEEDED = ["sample_rate"]

    @classmethod
    def from_hparams(cls, source, hparams_file=HPARAMS_NAME, overrides=None, **kwargs):
        """Load the student of a local folder holding ``hyperparams.yaml``.

        Arguments
        ---------
        source : str or os.PathLike
            The exported student folder.
        hparams_file : str
            Name of the yaml in the folder.
        overrides : dict, optional
            Yaml overrides.
        **kwargs
            Passed to ``Pretrained.from_hparams`` (``run_opts``, ``savedir``...).

        Returns
        -------
        SSLStudentEncoder
        """
        overrides = {FOLDER_KEY: str(source), **(overrides or {})}
        return super().from_hparams(
            str(source), hparams_file=hparams_file, overrides=overrides, **kwargs
        )

    def encode_batch(self, wavs, wav_lens=None):
        """All hidden states of a padded batch.

        Arguments
        ---------
        wavs : torch.Tensor
            Waveforms (batch, samples) at ``sample_rate``.
        wav_lens : torch.Tensor, optional
            SpeechBrain relative lengths; None means no padding.

        Returns
        -------
        hidden : torch.Tensor
            (num_layers + 1, batch, frames, hidden).
        frame_lens : torch.Tensor
            Real frames per utterance.
        """
        wavs = wavs.to(self.device).float()
        if wav_lens is not None:
            wav_lens = wav_lens.to(self.device)
        with torch.no_grad():
            return self.mods.encoder(wavs, wav_lens)

    def encode_file(self, path):
        """All hidden states of one audio file (mono-mixed, resampled if needed).

        Arguments
        ---------
        path : str
            Audio file readable by soundfile.

        Returns
        -------
        hidden : torch.Tensor
            (num_layers + 1, 1, frames, hidden).
        frame_lens : torch.Tensor
        """
        audio = read_audio(str(path), sample_rate=self.hparams.sample_rate)
        return self.encode_batch(audio.unsqueeze(0))

    def forward(self, wavs, wav_lens=None):
        """Same as :meth:`encode_batch`."""
        return self.encode_batch(wavs, wav_lens)
