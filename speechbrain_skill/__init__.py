"""speechbrain-skill: similarity-aware distillation and pruning of speech SSL models."""

import logging

__version__ = "0.1.0"


class _NoTorchvisionNotice(logging.Filter):
    """Drop SpeechBrain's import-time "torchvision is not available" warning.

    ``speechbrain.utils.train_logger`` warns on import when torchvision is
    missing, because its ``ProgressSampleLogger`` could not save images. This
    package does not use that logger (its figures are drawn with matplotlib),
    so the warning only misleads; it is dropped for that logger alone.
    """

    def filter(self, record):
        """False for the torchvision notice."""
        return "torchvision is not available" not in record.getMessage()


logging.getLogger("speechbrain.utils.train_logger").addFilter(_NoTorchvisionNotice())
