"""Stages as objects: a run is a chain of stages whose results pass in memory.

A :class:`Stage` has a name, a function, the sources it reads (teacher
weights, manifests: fingerprints given by the run) and the settings it
declares it does NOT depend on. Its fingerprint covers every resolved setting
of the run (nested arguments of ``!new:`` / ``!name:`` objects included, see
:func:`resolved_settings`) minus that ignore list, plus its sources and the
fingerprint of the stage before it. A setting nobody declared therefore costs
a recompute, never a stale result.

:class:`StageFlow` runs the stages in order. A stage's result goes to the
next stage in memory; the disk (``<output_folder>/stages/<stage>.json`` of
:class:`~speechbrain_skill.training.stage_records.StageRecords`, the
checkpoints, the stage's output folders) is the resume cache, read only when
a finished stage is skipped (:attr:`Stage.load`).
"""

import fnmatch
import functools

import ruamel.yaml
from hyperpyyaml import resolve_references

from speechbrain_skill.training.progress import stage_banner
from speechbrain_skill.training.stage_records import fingerprint

# Folders whose location is not a setting: their content is fingerprinted
# (manifests, checkpoints) or is the run's own output.
FOLDER_KEYS = ("output_folder", "data_folder")


def _plain_tree(value):
    """A ruamel node as plain data; a tagged node is a dict with its tag at ``"!"``.

    ``!name:f {a: 1}`` -> ``{"!": "!name:f", "a": 1}``; a tagged list keeps its
    items under ``"args"``, a tagged scalar its value under ``"value"``.
    """
    tag = getattr(getattr(value, "tag", None), "value", None)
    if isinstance(value, dict):
        plain = {str(k): _plain_tree(v) for k, v in value.items()}
        return {"!": tag, **plain} if tag else plain
    if isinstance(value, list):
        plain = [_plain_tree(v) for v in value]
        return {"!": tag, "args": plain} if tag else plain
    if tag:  # a tagged scalar
        return {"!": tag, "value": value.value} if value.value else {"!": tag}
    if isinstance(value, bool) or value is None:
        return value
    for kind in (int, float, str):
        if isinstance(value, kind):
            return kind(value)
    return str(value)


def _flatten(value, prefix, out):
    """Dicts (and lists holding dicts) flattened to ``a.b[0].c`` keys."""
    if isinstance(value, dict) and value:
        for key, item in value.items():
            _flatten(item, f"{prefix}.{key}" if prefix else key, out)
    elif isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
        for index, item in enumerate(value):
            _flatten(item, f"{prefix}[{index}]", out)
    else:
        out[prefix] = value
    return out


def _replace_folders(value, folders):
    """Strings with each folder's path replaced by ``<name>``."""
    if isinstance(value, str):
        for name, path in folders.items():
            if value == path or value.startswith(path.rstrip("/") + "/"):
                return f"<{name}>" + value[len(path.rstrip("/")) :]
        return value
    return value


def resolved_settings(hparams_file, overrides=None, folder_keys=FOLDER_KEYS):
    r"""Every setting of a recipe yaml, resolved, flat, without building objects.

    Overrides are applied and references resolved; a ``!new:`` / ``!name:`` /
    ``!apply:`` object appears with its tag and each of its arguments (so the
    weight decay inside an optimizer is a setting like any other). Nested
    values get dotted keys. The paths of ``folder_keys`` are written as
    ``<output_folder>`` etc., so that a run copied to another folder keeps its
    fingerprints.

    Arguments
    ---------
    hparams_file : str or os.PathLike
        The recipe yaml.
    overrides : str or dict, optional
        Command-line overrides.
    folder_keys : tuple of str
        Top-level keys whose path value is replaced by its name.

    Returns
    -------
    dict
        Flat key -> plain value.

    Example
    -------
    >>> import tempfile
    >>> from pathlib import Path
    >>> path = Path(tempfile.mkdtemp()) / "h.yaml"
    >>> _ = path.write_text(
    ...     "output_folder: !PLACEHOLDER\nlog: !ref <output_folder>/log.txt\n"
    ...     "opt: !name:torch.optim.AdamW\n    weight_decay: 0.01\n"
    ... )
    >>> resolved_settings(path, {"output_folder": "/tmp/run"})
    ... # doctest: +NORMALIZE_WHITESPACE
    {'output_folder': '<output_folder>', 'log': '<output_folder>/log.txt',
     'opt.!': '!name:torch.optim.AdamW', 'opt.weight_decay': 0.01}
    """
    with open(hparams_file, encoding="utf-8") as handle:
        resolved = resolve_references(handle, overrides)
    tree = _plain_tree(ruamel.yaml.YAML().load(resolved))
    folders = {
        key: tree[key]
        for key in folder_keys
        if isinstance(tree.get(key), str) and tree[key]
    }
    flat = _flatten(tree, "", {})
    return {key: _replace_folders(value, folders) for key, value in flat.items()}


def top_level_key(key):
    """The top-level setting a flat key belongs to.

    Example
    -------
    >>> top_level_key("prune_opt_class.lr")
    'prune_opt_class'
    >>> top_level_key("groups[0]")
    'groups'
    """
    return key.split(".", 1)[0].split("[", 1)[0]


@functools.lru_cache(maxsize=65536)
def is_ignored(key, ignore):
    """Whether flat ``key`` matches one of the ``ignore`` patterns.

    A pattern without a dot matches the top-level setting (``fnmatch``); one
    with a dot matches the key or a dotted prefix of it.

    Example
    -------
    >>> is_ignored("train_dataloader_opts.num_workers", ("*_opts.num_workers",))
    True
    >>> is_ignored("train_dataloader_opts.collate_fn.!", ("*_opts.num_workers",))
    False
    """
    parts = key.split(".")
    prefixes = [".".join(parts[: i + 1]) for i in range(1, len(parts))]
    for pattern in ignore:
        if "." not in pattern:
            if fnmatch.fnmatchcase(top_level_key(key), pattern):
                return True
        elif any(fnmatch.fnmatchcase(prefix, pattern) for prefix in prefixes):
            return True
    return False


def stage_settings(settings, ignore):
    """``settings`` without the keys that match ``ignore`` (:func:`is_ignored`).

    Arguments
    ---------
    settings : dict
        Flat settings (:func:`resolved_settings`).
    ignore : tuple of str
        Top-level names or ``fnmatch`` patterns.

    Returns
    -------
    dict

    Example
    -------
    >>> stage_settings({"a.x": 1, "log_interval": 5, "b": 2}, ["log_*", "b"])
    {'a.x': 1}
    """
    ignore = tuple(ignore)
    return {
        key: value for key, value in settings.items() if not is_ignored(key, ignore)
    }


class Stage:
    """One stage: a name, a function, its sources, its ignore list, its outputs.

    Arguments
    ---------
    name : str
        Its record's name (``<output_folder>/stages/<name>.json``).
    function : callable, optional
        ``function(*inputs) -> (value, summary)``: runs the stage on the
        results of earlier stages (in memory); ``summary`` (json) is recorded.
    load : callable, optional
        ``load(summary, *inputs) -> value``: the result of a finished stage
        that is skipped, rebuilt from its record and its output on disk.
    ignore : iterable of str
        Top-level settings (``fnmatch`` patterns) that do not affect it.
    sources : iterable of str
        Names of the run's source fingerprints it reads (teacher, manifests).
    outputs : iterable of str or os.PathLike
        Files and folders it writes (cleared when it is recomputed).
    detail : str
        Shown on its banner.
    title : str, optional
        Its name on the banner (default: ``name``).
    """

    def __init__(
        self,
        name,
        function=None,
        load=None,
        ignore=(),
        sources=(),
        outputs=(),
        detail="",
        title=None,
    ):
        self.name = name
        self.function = function
        self.load = load
        self.ignore = tuple(ignore)
        self.sources = tuple(sources)
        self.outputs = [str(path) for path in outputs]
        self.detail = detail
        self.title = title or name


class StageFlow:
    """Runs stages in order; each stage's fingerprint covers the one before it.

    Arguments
    ---------
    records : StageRecords
        Where stages are recorded (and found finished on a rerun).
    settings : dict
        Every resolved setting of the run (:func:`resolved_settings`), run
        options included.
    sources : dict
        Source name -> fingerprint, or a callable returning it (called once,
        when a stage first reads it).
    planned : list of str
        The names of the stages this run will run (for the banners).

    Example
    -------
    >>> import tempfile
    >>> from speechbrain_skill.training.stage_records import StageRecords
    >>> records = StageRecords(tempfile.mkdtemp())
    >>> settings = {"k": 2, "lr": 0.1, "log_interval": 5}
    >>> double = Stage("double", lambda: ([1, 1], {"n": 2}), ignore=["lr", "log_*"])
    >>> flow = StageFlow(records, settings, {}, ["double"])
    >>> flow.run(double)
    [1, 1]
    >>> double.load = lambda summary: [1] * summary["n"]
    >>> StageFlow(records, {**settings, "lr": 0.5}, {}, ["double"]).run(double)
    [1, 1]
    """

    def __init__(self, records, settings, sources, planned):
        self.records = records
        self.settings = settings
        self.sources = dict(sources)
        self.planned = list(planned)
        self.previous = None  # (name, fingerprint) of the last stage run
        self.summaries = {}  # stage name -> its recorded summary

    def source(self, name):
        """The fingerprint of source ``name`` (computed on first use)."""
        value = self.sources[name]
        if callable(value):
            value = self.sources[name] = value()
        return value

    def key(self, stage):
        """The settings and inputs that make ``stage``'s fingerprint."""
        inputs = {name: self.source(name) for name in stage.sources}
        if self.previous is not None:
            inputs[self.previous[0]] = self.previous[1]
        return stage_settings(self.settings, stage.ignore), inputs

    def run(self, stage, *inputs):
        """Run ``stage`` on ``inputs`` (earlier results), or load it if finished.

        Returns
        -------
        object
            The stage's result, for the next stages.
        """
        settings, fingerprints = self.key(stage)
        record = self.records.stage(stage.name, settings, fingerprints, stage.outputs)
        self.previous = (stage.name, record.fingerprint)
        if record.done:
            self.summaries[stage.name] = record.summary
            return stage.load(record.summary, *inputs) if stage.load else None
        number = self.planned.index(stage.name) + 1
        stage_banner(number, len(self.planned), stage.title, stage.detail)
        value, summary = stage.function(*inputs)
        self.summaries[stage.name] = summary
        record.finish(summary)
        return value

    def fingerprints(self, stages):
        """The fingerprint of each of ``stages`` in order, without running any.

        Example
        -------
        >>> flow = StageFlow(None, {"k": 2, "lr": 0.1}, {"data": "abc"}, [])
        >>> first, second = Stage("a", ignore=["lr"]), Stage("b", sources=["data"])
        >>> keys = flow.fingerprints([first, second])
        >>> keys == StageFlow(None, {"k": 2, "lr": 0.2}, {"data": "abc"}, []
        ...                   ).fingerprints([first, second])
        False
        >>> keys["a"] == flow.fingerprints([first])["a"]
        True
        """
        previous, keys = self.previous, {}
        self.previous = None
        try:
            for stage in stages:
                settings, inputs = self.key(stage)
                keys[stage.name] = fingerprint({"settings": settings, "inputs": inputs})
                self.previous = (stage.name, keys[stage.name])
        finally:
            self.previous = previous
        return keys
