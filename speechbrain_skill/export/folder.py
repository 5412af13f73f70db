"""The one writer of model folders: config, weights, preprocessor, heads, code, card.

Every folder this package writes goes through :func:`write_model_folder`: our
student format (:func:`~speechbrain_skill.lobes.student.save_student`), the
Hugging Face exports (compact with custom code, stock-padded), the exported
pretrained models and the tiny test models. The preprocessor config is the one
of :func:`preprocessor_config`, so every folder states the same input
convention.
"""

import json
import os
from pathlib import Path

from speechbrain_skill.lobes.hf_ssl import SAMPLE_RATE
from speechbrain_skill.training.modules import unwrap

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
PREPROCESSOR_NAME = "preprocessor_config.json"
README_NAME = "README.md"


def preprocessor_config(do_normalize=False, sampling_rate=SAMPLE_RATE):
    """The Hugging Face feature-extractor settings of a speech SSL model folder.

    ``return_attention_mask`` is always True: our students and teachers mask
    padding frames, so a padded batch needs the mask to give each utterance
    the hidden states it has alone.

    Arguments
    ---------
    do_normalize : bool
        Zero-mean, unit-variance waveforms before the model (wav2vec 2.0 Base).
    sampling_rate : int
        Sampling rate of the input.

    Returns
    -------
    dict
        The content of ``preprocessor_config.json``.

    Example
    -------
    >>> settings = preprocessor_config()
    >>> settings["feature_extractor_type"], settings["return_attention_mask"]
    ('Wav2Vec2FeatureExtractor', True)
    """
    return {
        "do_normalize": bool(do_normalize),
        "feature_extractor_type": "Wav2Vec2FeatureExtractor",
        "feature_size": 1,
        "padding_side": "right",
        "padding_value": 0.0,
        "processor_class": "Wav2Vec2Processor",
        "return_attention_mask": True,
        "sampling_rate": int(sampling_rate),
    }


def hf_model_config(hf_model):
    """The ``config.json`` of a Hugging Face model, as ``save_pretrained`` writes it.

    Arguments
    ---------
    hf_model : transformers.PreTrainedModel
        The model.

    Returns
    -------
    dict

    Example
    -------
    >>> from speechbrain_skill.lobes.hf_ssl import random_ssl_model
    >>> from speechbrain_skill.lobes.tiny_models import tiny_config
    >>> hf_model_config(random_ssl_model(tiny_config("hubert")))["architectures"]
    ['HubertModel']
    """
    document = hf_model.config.to_diff_dict()
    document["architectures"] = [type(hf_model).__name__]
    return document


def _write_text(path, text):
    tmp = Path(f"{path}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_model_folder(
    directory,
    config=None,
    tensors=None,
    preprocessor=None,
    modules=None,
    files=None,
    readme=None,
):
    """Write a model folder; existing files of the same names are replaced.

    Arguments
    ---------
    directory : str or os.PathLike
        Output folder (created).
    config : dict, optional
        Written as ``config.json``.
    tensors : dict, optional
        Name -> tensor, written as ``model.safetensors`` (CPU, contiguous).
    preprocessor : dict, optional
        Written as ``preprocessor_config.json`` (see :func:`preprocessor_config`).
    modules : dict, optional
        Name -> ``torch.nn.Module`` (e.g. distillation heads): each state dict
        is written as ``<name>.ckpt`` (DDP wrappers are unwrapped).
    files : dict, optional
        File name -> text (custom code, ``hyperparams.yaml``).
    readme : str, optional
        The model card, written as ``README.md``.

    Returns
    -------
    str
        The folder.

    Example
    -------
    >>> import tempfile, torch
    >>> path = write_model_folder(tempfile.mkdtemp(), {"a": 1},
    ...     {"w": torch.ones(2)}, preprocessor_config(),
    ...     modules={"heads": torch.nn.Linear(2, 2)}, readme="# card")
    >>> sorted(os.listdir(path))  # doctest: +NORMALIZE_WHITESPACE
    ['README.md', 'config.json', 'heads.ckpt', 'model.safetensors',
     'preprocessor_config.json']
    """
    import torch

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if config is not None:
        _write_text(
            directory / CONFIG_NAME,
            json.dumps(config, indent=2, sort_keys=True) + "\n",
        )
    if tensors is not None:
        from safetensors.torch import save_file

        cpu = {
            name: tensor.detach().cpu().contiguous() for name, tensor in tensors.items()
        }
        tmp = directory / f"{WEIGHTS_NAME}.tmp"
        save_file(cpu, str(tmp), metadata={"format": "pt"})
        os.replace(tmp, directory / WEIGHTS_NAME)
    if preprocessor is not None:
        _write_text(
            directory / PREPROCESSOR_NAME,
            json.dumps(preprocessor, indent=2, sort_keys=True) + "\n",
        )
    for name, module in (modules or {}).items():
        module = unwrap(module)
        torch.save(module.state_dict(), directory / f"{name}.ckpt")
    for name, text in (files or {}).items():
        _write_text(directory / name, text)
    if readme is not None:
        _write_text(directory / README_NAME, readme)
    return str(directory)
