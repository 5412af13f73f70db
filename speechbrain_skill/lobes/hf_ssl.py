"""Loading Hugging Face speech SSL models (WavLM, HuBERT, wav2vec 2.0).

One function, :func:`load_hf_ssl_model`, loads a teacher from a hub id
(``microsoft/wavlm-base-plus``), a local ``save_pretrained`` directory or a
model shipped with this package (``builtin:<name>``). Tests and examples create
tiny randomly initialised models with
:func:`~speechbrain_skill.lobes.tiny_models.save_tiny_model` and load them
through the very same function.
"""

import contextlib
import json
import logging
import os
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

SUPPORTED_MODEL_TYPES = ("wavlm", "hubert", "wav2vec2")
BUILTIN_PREFIX = "builtin:"
BUILTIN_DIR = Path(__file__).resolve().parent.parent / "assets" / "models"
SAMPLE_RATE = 16000


HUB_ALTERNATIVES = (
    "the shipped model (--teacher_source=builtin:tiny-wavlm, or "
    "--upstream_source=builtin:tiny-wavlm) or a local folder written by "
    "save_pretrained (config.json, weights, preprocessor_config.json)"
)


class TeacherLoadError(ValueError):
    """Raised when a teacher source cannot be resolved or is not supported."""


def _model_classes():
    from transformers import HubertModel, Wav2Vec2Model, WavLMModel

    return {"wavlm": WavLMModel, "hubert": HubertModel, "wav2vec2": Wav2Vec2Model}


def _config_classes():
    from transformers import HubertConfig, Wav2Vec2Config, WavLMConfig

    return {"wavlm": WavLMConfig, "hubert": HubertConfig, "wav2vec2": Wav2Vec2Config}


def resolve_source(source):
    """Turn ``builtin:<name>`` into the shipped directory; other sources pass through.

    Arguments
    ---------
    source : str or os.PathLike
        Hub id, local directory or ``builtin:<name>``.

    Returns
    -------
    str
        A hub id or an existing local directory.

    Example
    -------
    >>> resolve_source("microsoft/wavlm-base-plus")
    'microsoft/wavlm-base-plus'
    """
    source = str(source)
    if source.startswith(BUILTIN_PREFIX):
        name = source[len(BUILTIN_PREFIX) :]
        path = BUILTIN_DIR / name
        if not (path / "config.json").is_file():
            available = sorted(
                p.name for p in BUILTIN_DIR.glob("*") if (p / "config.json").is_file()
            )
            raise TeacherLoadError(
                f"Unknown built-in model '{name}'. Available: {available or 'none'}."
            )
        return str(path)
    # A format folder an export did not write: say so, not "the hub failed".
    from speechbrain_skill.export.exporter import missing_export_reason

    reason = missing_export_reason(source)
    if reason:
        raise TeacherLoadError(reason)
    return source


@contextlib.contextmanager
def no_weight_loading_bar(local=True):
    """Hide transformers' "Loading weights" bar for a local folder (instant, noise).

    Hub downloads keep their bars: the download is what takes time.

    Arguments
    ---------
    local : bool
        Whether the model comes from a local folder (False: change nothing).

    Example
    -------
    >>> from transformers.utils import logging as hf_logging
    >>> with no_weight_loading_bar():
    ...     hf_logging.is_progress_bar_enabled()
    False
    """
    from transformers.utils import logging as hf_logging

    hide = local and hf_logging.is_progress_bar_enabled()
    if hide:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if hide:
            hf_logging.enable_progress_bar()


def load_hf_ssl_model(source, cache_dir=None, eval_mode=True):
    """Load a WavLM / HuBERT / wav2vec 2.0 model from the hub, a folder or the package.

    LayerDrop is switched off (it breaks layer-to-layer targets and DDP), the
    model type is checked against :data:`SUPPORTED_MODEL_TYPES`, and failures
    name the source and the likely cause (offline hub, wrong path).

    Arguments
    ---------
    source : str, os.PathLike or transformers.PreTrainedModel
        Hub id, local ``save_pretrained`` directory, ``builtin:<name>``, or an
        already loaded model (returned after the same checks).
    cache_dir : str, optional
        Hugging Face cache folder for hub downloads.
    eval_mode : bool
        Put the model in eval mode (default True).

    Returns
    -------
    transformers.PreTrainedModel

    Example
    -------
    >>> import tempfile
    >>> from speechbrain_skill.lobes.tiny_models import save_tiny_model
    >>> path = save_tiny_model(tempfile.mkdtemp(), "hubert")
    >>> model = load_hf_ssl_model(path)
    >>> model.config.model_type, model.config.layerdrop
    ('hubert', 0.0)
    """
    if isinstance(source, torch.nn.Module):
        model = source
    else:
        resolved = resolve_source(source)
        config = load_hf_ssl_config(resolved, cache_dir=cache_dir)
        cls = _model_classes()[config.model_type]
        config.layerdrop = 0.0
        try:
            with no_weight_loading_bar(os.path.isdir(resolved)):
                model = cls.from_pretrained(
                    resolved, config=config, cache_dir=cache_dir
                )
        except OSError as err:  # pragma: no cover - depends on the network
            raise TeacherLoadError(
                f"Could not load weights for '{source}': {err}. Without the "
                f"hub, use {HUB_ALTERNATIVES}."
            ) from err
    model_type = getattr(model.config, "model_type", None)
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise TeacherLoadError(
            f"Unsupported model type '{model_type}'; expected one of "
            f"{SUPPORTED_MODEL_TYPES}."
        )
    model.config.layerdrop = 0.0
    if eval_mode:
        model.eval()
    return model


def load_hf_ssl_config(source, cache_dir=None):
    """Load and check the config of an SSL model source.

    Arguments
    ---------
    source : str or os.PathLike
        Hub id, local directory or ``builtin:<name>``.
    cache_dir : str, optional
        Hugging Face cache folder.

    Returns
    -------
    transformers.PretrainedConfig

    Example
    -------
    >>> import tempfile
    >>> from speechbrain_skill.lobes.tiny_models import save_tiny_model
    >>> load_hf_ssl_config(save_tiny_model(tempfile.mkdtemp())).model_type
    'wavlm'
    """
    from transformers import AutoConfig

    resolved = resolve_source(source)
    try:
        config = AutoConfig.from_pretrained(resolved, cache_dir=cache_dir)
    except (OSError, ValueError) as err:
        hint = (
            "it is not an existing local directory"
            if not os.path.isdir(resolved)
            else "the directory has no usable config.json"
        )
        raise TeacherLoadError(
            f"Could not load teacher '{source}': {hint}, and the Hugging Face hub "
            "could not provide it (offline machine or wrong id?). Without the "
            f"hub, use {HUB_ALTERNATIVES}. Original error: {err}"
        ) from err
    if config.model_type not in SUPPORTED_MODEL_TYPES:
        raise TeacherLoadError(
            f"Teacher '{source}' has model_type '{config.model_type}'; supported: "
            f"{SUPPORTED_MODEL_TYPES}."
        )
    return config


def waveform_normalization(source):
    """Tell whether a source's feature extractor normalises waveforms.

    ``microsoft/wavlm-base-plus`` and ``facebook/hubert-base-ls960`` do not;
    ``facebook/wav2vec2-base`` does. When the information is unavailable,
    False is returned and logged.

    Arguments
    ---------
    source : str or os.PathLike
        Hub id, local directory or ``builtin:<name>``.

    Returns
    -------
    bool

    Example
    -------
    >>> import tempfile
    >>> from speechbrain_skill.lobes.tiny_models import save_tiny_model
    >>> waveform_normalization(save_tiny_model(tempfile.mkdtemp()))
    False
    """
    resolved = resolve_source(source)
    local = Path(resolved) / "preprocessor_config.json"
    try:
        if local.is_file():
            settings = json.loads(local.read_text())
        else:
            from transformers import AutoFeatureExtractor

            settings = AutoFeatureExtractor.from_pretrained(resolved).to_dict()
    except (OSError, ValueError):
        logger.info("No feature-extractor config for %s: no normalisation.", source)
        return False
    return bool(settings.get("do_normalize", False))


def random_ssl_model(config_or_source, seed=0):
    """A randomly initialised SSL model of a config, or of a source's config.

    The initialisation is seeded without touching the global random state;
    LayerDrop is off and the model is in eval mode.

    Arguments
    ---------
    config_or_source : transformers.PretrainedConfig or str
        A config, or a hub id / local directory / ``builtin:<name>``.
    seed : int
        Seed of the initialisation.

    Returns
    -------
    transformers.PreTrainedModel

    Example
    -------
    >>> from speechbrain_skill.lobes.tiny_models import tiny_config
    >>> a = random_ssl_model(tiny_config("hubert"), seed=1)
    >>> b = random_ssl_model(tiny_config("hubert"), seed=1)
    >>> all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
    True
    """
    config = config_or_source
    if not hasattr(config, "model_type"):
        config = load_hf_ssl_config(config_or_source)
    config.layerdrop = 0.0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _model_classes()[config.model_type](config)
    return model.eval()
