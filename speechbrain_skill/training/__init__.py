"""Training infrastructure shared by every Brain of speechbrain-skill.

* :mod:`~speechbrain_skill.training.modules`: unwrapping DDP / DataParallel.
* :mod:`~speechbrain_skill.training.batch_skipping`: skipping unusable batches
  (DDP-safe zero-loss steps).
* :mod:`~speechbrain_skill.training.checkpoints`: kill-safe checkpoints;
  recovery falls back past damaged files; disk space checked before saving.
* :mod:`~speechbrain_skill.training.run_lock`: one run per output folder
  (a second run stops naming the first; a killed run's lock is taken over).
* :mod:`~speechbrain_skill.training.disk_space`: disk-full errors that name
  the folder and the space needed.
* :mod:`~speechbrain_skill.training.stage_records`: stage fingerprints, so
  that a rerun reuses a finished stage only when nothing it depends on changed.
* :mod:`~speechbrain_skill.training.checks`: configuration checks that run
  before any model is built or downloaded.
* :mod:`~speechbrain_skill.training.command_line`: a recipe's command line
  (options checked against the yaml, closest key named) and user errors as one
  line without a traceback.
* :mod:`~speechbrain_skill.training.lr_schedule`: one learning-rate factor for
  every parameter group (main weights, gates, multipliers), first step warmed up.
* :mod:`~speechbrain_skill.training.progress`: a progress bar over a stage's
  step budget, and stage banners.
* :mod:`~speechbrain_skill.training.compile`: opt-in ``torch.compile`` with an
  eager fallback.
* :mod:`~speechbrain_skill.training.yaml_functions`: small functions for
  recipe yamls (``!apply:``).
"""
