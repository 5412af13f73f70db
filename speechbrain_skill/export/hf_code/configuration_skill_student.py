"""Hugging Face config of a speechbrain-skill student (per-layer dimensions)."""

from transformers import PretrainedConfig


class SkillStudentConfig(PretrainedConfig):
    """Config of a (pruned) WavLM / HuBERT / wav2vec 2.0 student.

    The architecture is the ``student`` dictionary: the fields of
    ``speechbrain_skill.lobes.student.StudentConfig`` (per-layer heads kept,
    FFN widths, blocks present, conv channels). ``num_hidden_layers`` and
    ``hidden_size`` repeat what tools that read stock configs look for.

    Arguments
    ---------
    student : dict
        Student architecture fields.
    **kwargs
        Standard ``PretrainedConfig`` arguments.

    Example
    -------
    >>> config = SkillStudentConfig(student={"model_type": "hubert",
    ...     "hidden_size": 32, "ffn_dims": [64, 40]})
    >>> config.num_hidden_layers, config.ssl_model_type
    (2, 'hubert')
    """

    model_type = "skill_student"

    def __init__(self, student=None, **kwargs):
        self.student = dict(student or {})
        self.num_hidden_layers = len(self.student.get("ffn_dims", []))
        self.hidden_size = self.student.get("hidden_size", 0)
        self.ssl_model_type = self.student.get("model_type")
        for derived in ("num_hidden_layers", "hidden_size", "ssl_model_type"):
            kwargs.pop(derived, None)
        super().__init__(**kwargs)
