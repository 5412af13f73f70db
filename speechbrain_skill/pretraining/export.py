"""Export a pretrained model as a ``save_pretrained`` folder, without training parts.

The folder holds ``config.json``, ``model.safetensors`` and
``preprocessor_config.json``, like a hub checkpoint, so
:func:`~speechbrain_skill.lobes.hf_ssl.load_hf_ssl_model` and
``transformers`` load it directly. The masked-prediction head lives outside the
model and is not exported; the learned mask embedding is dropped as well and
``mask_time_prob`` set to 0, so the export has exactly the tensors of a
freshly built model of the same shape.
"""

import copy
import json

import torch

from speechbrain_skill.export.folder import (
    hf_model_config,
    preprocessor_config,
    write_model_folder,
)
from speechbrain_skill.training.modules import unwrap

MASK_EMBEDDING = "masked_spec_embed"
SUMMARY_NAME = "pretraining_summary.json"


def export_pretrained(model, path, summary=None):
    """Write ``model`` (a Hugging Face SSL model) to ``path`` for inference.

    Arguments
    ---------
    model : transformers.PreTrainedModel
        The pretrained WavLM / HuBERT (possibly DDP-wrapped).
    path : str or os.PathLike
        Output folder (created).
    summary : dict, optional
        Training facts written to ``pretraining_summary.json`` next to the
        weights (steps, accuracy, data, time).

    Returns
    -------
    str
        The folder.

    Example
    -------
    >>> import os, tempfile
    >>> from transformers import WavLMModel
    >>> from speechbrain_skill.pretraining.model import wavlm_pretraining_config
    >>> cfg = wavlm_pretraining_config(hidden_size=32, num_layers=1, num_heads=2,
    ...                                ffn_size=32, conv_channels=8, pos_conv_groups=4)
    >>> path = export_pretrained(WavLMModel(cfg), tempfile.mkdtemp())
    >>> sorted(os.listdir(path))
    ['config.json', 'model.safetensors', 'preprocessor_config.json']
    """
    model = unwrap(model)
    config = copy.deepcopy(model.config)
    config.mask_time_prob = 0.0
    config.mask_feature_prob = 0.0
    config.layerdrop = 0.0
    state = {k: v for k, v in model.state_dict().items() if k != MASK_EMBEDDING}
    with torch.random.fork_rng(devices=[]):
        exported = type(model)(config)
    exported.load_state_dict(state, strict=True)
    files = {}
    if summary is not None:
        files[SUMMARY_NAME] = json.dumps(summary, indent=2) + "\n"
    return write_model_folder(
        path,
        hf_model_config(exported.eval()),
        exported.state_dict(),
        preprocessor_config(),
        files=files,
    )
