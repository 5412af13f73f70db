"""Configuration checks that run before any model is built or downloaded.

Loading a recipe yaml builds its objects (teacher, student, upstream), which
may download a model. :func:`read_settings` reads the yaml's plain values
(command-line overrides applied, references resolved) without building
anything, so a recipe checks its settings first: SpeechBrain run-option
conflicts (:func:`check_run_options`), the data folder
(:func:`check_data_folder`) and numbers that must be positive
(:func:`check_positive`). Each raises :class:`ConfigurationError` naming the
setting and the fix.
"""

import os

import ruamel.yaml
from hyperpyyaml import resolve_references
from speechbrain.utils.run_opts import RunOptions


class ConfigurationError(ValueError):
    """A setting or a combination of settings that cannot run."""


class DataLayoutError(ConfigurationError, FileNotFoundError):
    """A data folder that does not hold what the recipe reads (a user error).

    Example
    -------
    >>> isinstance(DataLayoutError("no csv"), FileNotFoundError)
    True
    """


def _plain(value):
    """``value`` as plain Python, or None when it is (or holds) a yaml object."""
    tag = getattr(getattr(value, "tag", None), "value", None)
    if tag:
        raise TypeError("tagged")
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    for kind in (int, float, str):
        if isinstance(value, kind):
            return kind(value)
    raise TypeError(type(value).__name__)


def read_settings(hparams_file, overrides=None):
    r"""The plain top-level values of a recipe yaml, without building objects.

    Arguments
    ---------
    hparams_file : str or os.PathLike
        The recipe yaml.
    overrides : str or dict, optional
        Command-line overrides (as returned by ``speechbrain.parse_arguments``).

    Returns
    -------
    dict
        Key -> value for the keys whose value is a number, string, boolean,
        null, or a list / dict of those (``!new:`` objects etc. are left out).

    Example
    -------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "h.yaml")
    >>> with open(path, "w") as handle:
    ...     _ = handle.write(
    ...         "steps: 10\nfolder: !PLACEHOLDER\nout: !ref <folder>/out\n"
    ...         "layer: !new:torch.nn.Linear [2, 2]\n"
    ...     )
    >>> read_settings(path, {"folder": "/data", "steps": 0})
    {'steps': 0, 'folder': '/data', 'out': '/data/out'}
    """
    with open(hparams_file, encoding="utf-8") as handle:
        resolved = resolve_references(handle, overrides)
    settings = {}
    for key, value in ruamel.yaml.YAML().load(resolved).items():
        try:
            settings[str(key)] = _plain(value)
        except TypeError:
            continue
    return settings


def run_option(name, settings, run_opts):
    """The value SpeechBrain's ``Brain`` will use for run option ``name``.

    Command line first, then the yaml, then SpeechBrain's default.

    Arguments
    ---------
    name : str
        A field of ``speechbrain.utils.run_opts.RunOptions``.
    settings : dict
        The recipe's plain settings (:func:`read_settings`).
    run_opts : RunOptions or dict
        The run options from the command line (a dict counts as given).

    Returns
    -------
    object

    Example
    -------
    >>> run_option("ckpt_interval_minutes", {"ckpt_interval_minutes": 15}, {})
    15
    >>> run_option("ckpt_interval_minutes", {"ckpt_interval_minutes": 15},
    ...            {"ckpt_interval_minutes": 0})
    0
    """
    if isinstance(run_opts, dict):
        run_opts = RunOptions.from_dictionary(run_opts)
    if name in run_opts.overridden_args:
        return run_opts[name]
    if name in settings:
        return settings[name]
    return getattr(RunOptions(), name)


def check_run_options(settings, run_opts):
    """Reject SpeechBrain run options that conflict or cannot work.

    Arguments
    ---------
    settings : dict
        The recipe's plain settings (:func:`read_settings`).
    run_opts : RunOptions or dict
        The run options from the command line.

    Example
    -------
    >>> check_run_options({"ckpt_interval_minutes": 15}, {"ckpt_interval_steps": 50})
    Traceback (most recent call last):
      ...
    speechbrain_skill.training.checks.ConfigurationError: --ckpt_interval_steps=50 ...
    """
    steps = run_option("ckpt_interval_steps", settings, run_opts)
    minutes = run_option("ckpt_interval_minutes", settings, run_opts)
    if steps < 0 or minutes < 0:
        raise ConfigurationError(
            "ckpt_interval_steps and ckpt_interval_minutes cannot be negative "
            f"(got {steps} and {minutes}); 0 switches one off."
        )
    if steps > 0 and minutes > 0:
        raise ConfigurationError(
            f"--ckpt_interval_steps={steps} asks for a checkpoint every {steps} "
            f"steps, but ckpt_interval_minutes is {minutes}: SpeechBrain accepts "
            "only one of the two. Add --ckpt_interval_minutes=0."
        )
    accumulation = run_option("grad_accumulation_factor", settings, run_opts)
    if int(accumulation) < 1:
        raise ConfigurationError(
            f"grad_accumulation_factor must be at least 1, got {accumulation}."
        )
    launched = os.environ.get("RANK") is not None
    if launched and run_option("data_parallel_backend", settings, run_opts):
        raise ConfigurationError(
            "--data_parallel_backend cannot be combined with torchrun (DDP); "
            "choose one."
        )


def check_data_folder(data_folder, skip_prep=False, manifests=()):
    """Check that the data folder exists, or the manifests when preparation is skipped.

    Arguments
    ---------
    data_folder : str or os.PathLike
        The corpus root (``--data_folder``).
    skip_prep : bool
        Whether data preparation is skipped (then only ``manifests`` are read).
    manifests : iterable of str
        The csv files the recipe reads.

    Example
    -------
    >>> check_data_folder("/no/such/folder")
    Traceback (most recent call last):
      ...
    speechbrain_skill.training.checks.ConfigurationError: data_folder ...
    """
    if skip_prep:
        missing = [str(path) for path in manifests if not os.path.isfile(path)]
        if missing:
            raise ConfigurationError(
                f"skip_prep is True, but these manifests do not exist: {missing}. "
                "Run once without --skip_prep=True, or give the csv paths."
            )
        return
    if not os.path.isdir(data_folder):
        state = "is not a folder" if os.path.exists(data_folder) else "does not exist"
        raise ConfigurationError(
            f"data_folder '{data_folder}' {state}. Give the corpus root with "
            "--data_folder=... (for a first try: the built-in corpus, see the "
            "README's quick start)."
        )


def check_positive(settings, keys, integer=True, allow_zero=False):
    """Check that each of ``keys`` present in ``settings`` is a positive number.

    Arguments
    ---------
    settings : dict
        Plain settings.
    keys : iterable of str
        The keys to check; absent keys and null values are not checked.
    integer : bool
        Whether the values must be whole numbers (step counts).
    allow_zero : bool
        Whether 0 is accepted (e.g. warmup lengths).

    Example
    -------
    >>> check_positive({"prune_steps": 0, "final_steps": 5}, ["prune_steps"])
    Traceback (most recent call last):
      ...
    speechbrain_skill.training.checks.ConfigurationError: prune_steps must be ...
    """
    for key in keys:
        value = settings.get(key)
        if value is None:
            continue
        whole = isinstance(value, int) and not isinstance(value, bool)
        number = whole or isinstance(value, float)
        low_ok = value >= 0 if allow_zero and number else number and value > 0
        if not number or (integer and not whole) or not low_ok:
            kind = "a whole number" if integer else "a number"
            bound = "0 or more" if allow_zero else "greater than 0"
            raise ConfigurationError(f"{key} must be {kind} {bound}, got {value!r}.")
