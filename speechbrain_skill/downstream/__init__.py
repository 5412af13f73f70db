"""SUPERB-style downstream tasks on a frozen SSL upstream.

* :mod:`~speechbrain_skill.downstream.heads`: task heads (pooled utterance
  classifier, BiLSTM CTC head).
* :mod:`~speechbrain_skill.downstream.brain`: the shared ``Brain`` base
  (frozen upstream, skipped batches, checkpoints, results and layer weights).
* :mod:`~speechbrain_skill.downstream.classification`: utterance
  classification (keyword spotting, speaker identification).
* :mod:`~speechbrain_skill.downstream.asr`: CTC speech recognition.
* :mod:`~speechbrain_skill.downstream.data`: datasets and label encoders.
* :mod:`~speechbrain_skill.downstream.layer_weights`: saving and plotting the
  learned layer weights.
* :mod:`~speechbrain_skill.downstream.speed`: upstream inference speed.
* :mod:`~speechbrain_skill.downstream.compare`: the teacher-vs-students
  comparison command.
* :mod:`~speechbrain_skill.downstream.probing`: linear probes of every layer.

The csv helpers of the data preparation scripts live in
:mod:`speechbrain_skill.data.manifests`.
"""
