"""Shims that let s3prl 0.4.18 import and run next to this package's pins.

Measured with s3prl 0.4.18, torchaudio 2.11, huggingface_hub 2.5:

* ``import s3prl.hub`` imports every upstream; ``byol_s`` and s3prl's runner
  call ``torchaudio.set_audio_backend`` (removed in torchaudio 2.9), and
  ``mos_prediction`` imports ``torchaudio.sox_effects`` (removed too);
* s3prl's datasets read audio with ``torchaudio.load``, which in torchaudio
  2.9+ needs the separate ``torchcodec`` package;
* s3prl's runner imports ``HfFolder`` and ``Repository`` from
  ``huggingface_hub`` (removed in 1.0; only used to push results to the hub).

:func:`patch_for_s3prl` fills each gap that exists and leaves the rest
alone: ``set_audio_backend`` becomes a no-op, ``torchaudio.load`` reads with
soundfile (the reader this package uses everywhere), the sox effects and the
hub-push classes raise a clear error if something calls them.
"""

import sys
import types

import soundfile as sf
import torch


class S3PRLCompatibilityError(RuntimeError):
    """A feature of s3prl that needs a library this environment lacks."""


def _unavailable(name, reason):
    def call(*args, **kwargs):
        """Refuse with the reason."""
        raise S3PRLCompatibilityError(f"{name} is unavailable here: {reason}")

    return call


def soundfile_load(path, *args, **kwargs):
    """``torchaudio.load`` stand-in: (channels, samples) float32 and the rate.

    Arguments
    ---------
    path : str or os.PathLike
        Audio file (any format soundfile reads).
    *args, **kwargs
        ``torchaudio.load``'s other arguments; only ``frame_offset`` and
        ``num_frames`` are honoured.

    Returns
    -------
    tuple of (torch.Tensor, int)

    Example
    -------
    >>> import tempfile, numpy as np
    >>> path = tempfile.mktemp(suffix=".wav")
    >>> sf.write(path, np.zeros((800, 2), dtype="float32"), 16000)
    >>> wav, rate = soundfile_load(path)
    >>> tuple(wav.shape), rate
    ((2, 800), 16000)
    """
    start = int(kwargs.get("frame_offset", 0))
    frames = int(kwargs.get("num_frames", -1))
    data, rate = sf.read(
        str(path), start=start, frames=frames, dtype="float32", always_2d=True
    )
    return torch.from_numpy(data.T.copy()), rate


def patch_for_s3prl():
    """Fill the gaps between s3prl 0.4.18 and this environment (idempotent).

    Returns
    -------
    list of str
        What was patched (empty when nothing was needed).

    Example
    -------
    >>> first = patch_for_s3prl()
    >>> patch_for_s3prl()  # a second call finds nothing left to do
    []
    """
    import torchaudio

    patched = []
    if not hasattr(torchaudio, "set_audio_backend"):
        torchaudio.set_audio_backend = lambda *args, **kwargs: None
        patched.append("torchaudio.set_audio_backend")
    try:
        import torchaudio.sox_effects  # noqa: F401
    except ImportError:
        module = types.ModuleType("torchaudio.sox_effects")
        reason = "torchaudio >= 2.9 has no sox effects"
        module.apply_effects_tensor = _unavailable("apply_effects_tensor", reason)
        module.apply_effects_file = _unavailable("apply_effects_file", reason)
        sys.modules["torchaudio.sox_effects"] = module
        torchaudio.sox_effects = module
        patched.append("torchaudio.sox_effects")
    if getattr(torchaudio.load, "__name__", "") != "soundfile_load":
        try:
            import torchcodec  # noqa: F401
        except ImportError:
            torchaudio.load = soundfile_load
            patched.append("torchaudio.load")
    import huggingface_hub

    for name in ("HfFolder", "Repository"):
        if not hasattr(huggingface_hub, name):
            reason = f"huggingface_hub {huggingface_hub.__version__} removed it"
            setattr(
                huggingface_hub,
                name,
                type(name, (), {"__init__": _unavailable(name, reason)}),
            )
            patched.append(f"huggingface_hub.{name}")
    return patched
