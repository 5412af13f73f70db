"""The recipes' command line: options checked against the yaml, user errors in one line.

SpeechBrain passes every option it does not know to HyperPyYAML as an
override, and HyperPyYAML rejects a misspelt one only while it loads the
yaml, with a ``KeyError`` that lists every key. :func:`parse_recipe_arguments`
replaces ``speechbrain.parse_arguments`` in a recipe's ``train.py``: it checks
each override against the top-level keys of the yaml first, before anything
is loaded, and names the closest valid ones (``did you mean
--target_sparsity?``).

It also makes the user errors of the whole run (an unknown option, a missing
required setting, a busy output folder, a missing data folder, a model that cannot be
loaded: every :class:`~speechbrain_skill.training.checks.ConfigurationError`,
:class:`~speechbrain_skill.training.run_lock.OutputFolderBusy` and
:class:`~speechbrain_skill.lobes.hf_ssl.TeacherLoadError`) end the
process with one line on stderr and exit status 1, without a traceback.
SpeechBrain's ``--debug`` or the environment variable ``SKILL_TRACEBACK=1``
shows the traceback. Other exceptions are untouched.

``python -m speechbrain_skill.training.command_line HPARAMS [options]`` does the
same check alone (exit status 2), for scripts that wrap a recipe
(``scripts/quickstart.sh``).
"""

import difflib
import os
import sys

import ruamel.yaml

from speechbrain_skill.lobes.hf_ssl import TeacherLoadError
from speechbrain_skill.training.checks import ConfigurationError
from speechbrain_skill.training.run_lock import OutputFolderBusy

TRACEBACK_VARIABLE = "SKILL_TRACEBACK"
USER_ERRORS = (ConfigurationError, OutputFolderBusy, TeacherLoadError)


class UnknownOption(ConfigurationError):
    """A command-line option that is neither a run option nor a key of the yaml."""


def yaml_keys(hparams_file):
    r"""Top-level keys of a recipe yaml and those that are ``!PLACEHOLDER``.

    The yaml is read as text: no reference is resolved, nothing is imported.

    Arguments
    ---------
    hparams_file : str or os.PathLike

    Returns
    -------
    keys : list of str
    placeholders : list of str

    Example
    -------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "h.yaml")
    >>> with open(path, "w") as handle:
    ...     _ = handle.write("data_folder: !PLACEHOLDER\nsteps: 3\n"
    ...                      "layer: !new:torch.nn.Linear [2, 2]\n")
    >>> yaml_keys(path)
    (['data_folder', 'steps', 'layer'], ['data_folder'])
    """
    with open(hparams_file, encoding="utf-8") as handle:
        root = ruamel.yaml.YAML().compose(handle)
    keys, placeholders = [], []
    for key, value in root.value if root is not None else ():
        keys.append(str(key.value))
        tag = str(getattr(value.tag, "value", value.tag) or "")
        if tag == "!PLACEHOLDER":
            placeholders.append(str(key.value))
    return keys, placeholders


def closest_keys(name, keys, count=3):
    """The keys most like ``name`` (difflib), best first.

    Example
    -------
    >>> closest_keys("target_sparsty", ["target_sparsity", "prune_steps", "seed"])
    ['target_sparsity']
    """
    return difflib.get_close_matches(name, keys, n=count, cutoff=0.6)


def override_names(overrides):
    r"""The top-level names of SpeechBrain's override text (or dict).

    Example
    -------
    >>> override_names("target_sparsty: 0.5\nseed: 3\n")
    ['target_sparsty', 'seed']
    """
    if isinstance(overrides, str):
        overrides = ruamel.yaml.YAML(typ="safe", pure=True).load(overrides)
    return [str(name) for name in overrides or {}]


def check_overrides(hparams_file, overrides, script="train.py"):
    r"""Reject overrides that are not keys of the yaml; require its placeholders.

    Arguments
    ---------
    hparams_file : str or os.PathLike
        The recipe yaml.
    overrides : str or dict
        As returned by ``speechbrain.parse_arguments``.
    script : str
        The program named in the message.

    Example
    -------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "h.yaml")
    >>> with open(path, "w") as handle:
    ...     _ = handle.write("data_folder: !PLACEHOLDER\ntarget_sparsity: 0.75\n")
    >>> check_overrides(path, {"data_folder": "/d", "target_sparsty": 0.5})
    Traceback (most recent call last):
      ...
    speechbrain_skill...UnknownOption: ... did you mean --target_sparsity? ...
    >>> check_overrides(path, {})
    Traceback (most recent call last):
      ...
    speechbrain_skill...ConfigurationError: train.py: --data_folder=... is required ...
    """
    keys, placeholders = yaml_keys(hparams_file)
    given = override_names(overrides)
    name = os.path.basename(str(hparams_file))
    for option in given:
        if option in keys:
            continue
        near = closest_keys(option, keys)
        hint = (
            "did you mean " + " or ".join(f"--{key}" for key in near) + "?"
            if near
            else "no setting has a similar name."
        )
        raise UnknownOption(
            f"{script}: unknown option --{option}; {hint} (options: the top-level "
            f"keys of {name} and SpeechBrain's run options, see --help)"
        )
    missing = [key for key in placeholders if key not in given]
    if missing:
        raise ConfigurationError(
            f"{script}: " + ", ".join(f"--{key}=..." for key in missing) + " "
            f"{'is' if len(missing) == 1 else 'are'} required ({name} leaves "
            f"{'it' if len(missing) == 1 else 'them'} open)."
        )


def show_traceback(argv=()):
    """Whether user errors show their traceback (``--debug`` or ``SKILL_TRACEBACK``).

    Example
    -------
    >>> show_traceback(["hparams/x.yaml", "--debug"])
    True
    """
    flag = os.environ.get(TRACEBACK_VARIABLE, "").strip().lower()
    return "--debug" in argv or flag not in ("", "0", "false", "no")


def user_error_hook(default_hook, verbose=False):
    r"""A ``sys.excepthook`` that prints user errors as one line.

    Example
    -------
    >>> import io, contextlib
    >>> stderr = io.StringIO()
    >>> hook = user_error_hook(sys.__excepthook__)
    >>> with contextlib.redirect_stderr(stderr):
    ...     hook(ConfigurationError, ConfigurationError("bad"), None)
    >>> stderr.getvalue()
    'error: bad\n'
    """

    def hook(kind, error, traceback):
        """Print a user error as one line; anything else as usual."""
        if issubclass(kind, USER_ERRORS) and not verbose:
            print(f"error: {error}", file=sys.stderr)
            sys.stderr.flush()
        else:
            default_hook(kind, error, traceback)

    return hook


def parse_recipe_arguments(argv, script=None):
    """``speechbrain.parse_arguments`` with the overrides checked against the yaml.

    Call it first in a recipe's ``train.py``. It also installs
    :func:`user_error_hook` for the rest of the process.

    Arguments
    ---------
    argv : list of str
        ``sys.argv[1:]``.
    script : str, optional
        The program named in messages (default: ``sys.argv[0]``'s name).

    Returns
    -------
    hparams_file, run_opts, overrides
        As ``speechbrain.parse_arguments`` returns them.
    """
    import speechbrain as sb

    sys.excepthook = user_error_hook(sys.excepthook, verbose=show_traceback(argv))
    hparams_file, run_opts, overrides = sb.parse_arguments(argv)
    script = script or os.path.basename(sys.argv[0]) or "train.py"
    check_overrides(hparams_file, overrides, script=script)
    return hparams_file, run_opts, overrides


def main(argv=None):
    """Check a recipe command line; print the one-line error and return 2 if bad."""
    argv = sys.argv[1:] if argv is None else argv
    script = os.environ.get("SKILL_SCRIPT", "train.py")
    try:
        parse_recipe_arguments(argv, script=script)
    except USER_ERRORS as error:
        if show_traceback(argv):
            raise
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
