"""Prunable SSL student (WavLM / HuBERT / wav2vec 2.0) with hard-concrete gates.

Public API: :class:`PrunableSSLEncoder` (``from_hf``, forward,
``extract_features``, gates, expected parameter count, ``prune``),
:class:`StudentConfig`, :class:`HardConcreteGate`, :func:`save_student` /
:func:`load_student`, and the counting helpers.
"""

from speechbrain_skill.lobes.student.config import STRUCTURES, StudentConfig
from speechbrain_skill.lobes.student.hard_concrete import HardConcreteGate
from speechbrain_skill.lobes.student.hf_import import (
    import_hf_weights,
    student_config_from_hf,
)
from speechbrain_skill.lobes.student.io import load_student, save_student
from speechbrain_skill.lobes.student.masks import (
    StructureDims,
    check_masks,
    leading_unit_masks,
    mask_dims,
)
from speechbrain_skill.lobes.student.materialise import materialise, pruned_config
from speechbrain_skill.lobes.student.model import PrunableSSLEncoder
from speechbrain_skill.lobes.student.param_count import count_params, num_params

__all__ = [
    "STRUCTURES",
    "HardConcreteGate",
    "PrunableSSLEncoder",
    "StructureDims",
    "StudentConfig",
    "check_masks",
    "count_params",
    "import_hf_weights",
    "leading_unit_masks",
    "load_student",
    "mask_dims",
    "materialise",
    "num_params",
    "pruned_config",
    "save_student",
    "student_config_from_hf",
]
