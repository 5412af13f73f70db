"""Stage: teacher layer groups (SKILL's similarity + clustering).

* :mod:`~speechbrain_skill.layer_groups.similarity`: layer-similarity measures
  (streaming and minibatch linear CKA, cosine) and their accumulation.
* :mod:`~speechbrain_skill.layer_groups.clustering`: hierarchical clustering of
  the similarity matrix into groups; the ``groups.json`` format.
* :mod:`~speechbrain_skill.layer_groups.plots`: heatmap and dendrogram.
* :mod:`~speechbrain_skill.layer_groups.analysis`: the whole stage (teacher on a
  calibration set -> similarity -> groups -> files); also the command line
  ``python -m speechbrain_skill.layer_groups``.
"""
