"""speechbrain-skill: similarity-aware distillation and pruning of speech SSL models."""

__version__ = "0.1.0"
