"""Stage: teacher layer groups (SKILL's similarity + clustering).

* :mod:`~speechbrain_skill.layer_groups.cka`: linear CKA and unbiased HSIC.
* :mod:`~speechbrain_skill.layer_groups.accumulators`: streaming similarity
  measures (linear CKA, minibatch CKA, cosine) and their memory cost.
* :mod:`~speechbrain_skill.layer_groups.similarity`: the similarity matrix of a
  teacher over a calibration set.
* :mod:`~speechbrain_skill.layer_groups.clustering`: hierarchical clustering of
  the similarity matrix into groups.
* :mod:`~speechbrain_skill.layer_groups.groups_file`: the ``groups.json`` that
  recipes read, and group checks.
* :mod:`~speechbrain_skill.layer_groups.plots`: heatmap and dendrogram.
* :mod:`~speechbrain_skill.layer_groups.analysis`: the whole stage (teacher on a
  calibration set -> similarity -> groups -> files).
* :mod:`~speechbrain_skill.layer_groups.cli`: its command line,
  ``python -m speechbrain_skill.layer_groups``.
"""
