"""HuBERT-style masked-prediction pretraining of small Hugging Face WavLM models.

Building blocks of ``recipes/LibriSpeech/self-supervised-learning/hubert``:

* :mod:`~speechbrain_skill.pretraining.features`: frame features aligned with
  the model's 20 ms frames (MFCC for iteration 1, hidden states of an earlier
  model for iteration 2).
* :mod:`~speechbrain_skill.pretraining.kmeans`: a torch k-means.
* :mod:`~speechbrain_skill.pretraining.labels`: the labelling stage (features ->
  k-means -> one label per frame and utterance, saved to disk).
* :mod:`~speechbrain_skill.pretraining.masking`: HuBERT span masking.
* :mod:`~speechbrain_skill.pretraining.head`: the projection / codebook head and
  the masked cross-entropy.
* :mod:`~speechbrain_skill.pretraining.collate`: frame-aligned crops with labels.
* :mod:`~speechbrain_skill.pretraining.brain`: :class:`HuBERTPretrainBrain`.
* :mod:`~speechbrain_skill.pretraining.export`: the ``save_pretrained`` export
  without the training-only head.
"""
