"""Stages: distillation with structured pruning, materialisation, final distillation.

* :mod:`~speechbrain_skill.distillation.targets`: group-mean targets, frame alignment.
* :mod:`~speechbrain_skill.distillation.losses`: padding-aware L1 + cosine losses.
* :mod:`~speechbrain_skill.distillation.lagrangian`: the sparsity Lagrangian.
* :mod:`~speechbrain_skill.distillation.brains`: the distillation Brains.
* :mod:`~speechbrain_skill.distillation.stages`: the recipe's stages, resumable.
* :mod:`~speechbrain_skill.distillation.report`: the end-of-run report.
"""
