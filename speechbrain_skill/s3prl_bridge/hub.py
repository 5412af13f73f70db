"""The ``speechbrain_skill`` entry of ``s3prl.hub``."""

from speechbrain_skill.s3prl_bridge.compat import patch_for_s3prl
from speechbrain_skill.s3prl_bridge.expert import UpstreamExpert

HUB_NAME = "speechbrain_skill"


def speechbrain_skill(ckpt=None, model_config=None, refresh=False, **kwargs):
    """s3prl hub function (hubconf style): the upstream of a source.

    Arguments
    ---------
    ckpt : str or os.PathLike
        Student folder, Hugging Face folder or ``builtin:<name>``.
    model_config : str, optional
        Ignored.
    refresh : bool
        Ignored (nothing is downloaded).
    **kwargs
        Ignored s3prl options.

    Returns
    -------
    UpstreamExpert

    Example
    -------
    >>> speechbrain_skill("builtin:tiny-wavlm").get_downsample_rates()
    320
    """
    return UpstreamExpert(ckpt, model_config=model_config)


def register(name=HUB_NAME):
    """Add the entry to ``s3prl.hub`` (after the compatibility shims).

    Arguments
    ---------
    name : str
        Entry name; ``S3PRLUpstream(name, path_or_url=source)`` and
        ``run_downstream -u name -k source`` then load this package's upstream.

    Returns
    -------
    module
        ``s3prl.hub``.
    """
    patch_for_s3prl()
    try:
        from s3prl import hub
    except ImportError as error:
        raise ImportError(
            "s3prl is not installed: pip install 'speechbrain_skill[s3prl]' "
            "(or pip install s3prl)."
        ) from error
    setattr(hub, name, speechbrain_skill)
    return hub
