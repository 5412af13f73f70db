#!/usr/bin/env python3
"""Distil (and prune) a speech SSL teacher: SKILL, DPHuBERT, DistilHuBERT, ...

Usage::

    python train.py hparams/skill_wavlm.yaml --data_folder=/data/LibriSpeech
    torchrun --nproc_per_node=4 train.py hparams/skill_wavlm.yaml --data_folder=...

The stages (layer groups, distill + prune, materialise, final distillation,
export) live in :mod:`speechbrain_skill.distillation.stages`; re-running resumes.
"""

import sys

import speechbrain as sb
from hyperpyyaml import load_hyperpyyaml
from librispeech_prepare import prepare_librispeech
from speechbrain.utils.distributed import run_on_main

from speechbrain_skill.distillation.stages import DistillationPipeline
from speechbrain_skill.training.run_lock import lock_output_folder

if __name__ == "__main__":
    hparams_file, run_opts, overrides = sb.parse_arguments(sys.argv[1:])
    sb.utils.distributed.ddp_init_group(run_opts)
    with open(hparams_file, encoding="utf-8") as fin:
        hparams = load_hyperpyyaml(fin, overrides)
    # One run per output folder: a second run stops here, naming the first.
    lock_output_folder(hparams["output_folder"])
    sb.create_experiment_directory(
        experiment_directory=hparams["output_folder"],
        hyperparams_to_save=hparams_file,
        overrides=overrides,
    )
    # Configuration errors surface here, before any data preparation or training.
    pipeline = DistillationPipeline(hparams, run_opts)
    run_on_main(
        prepare_librispeech,
        kwargs={
            "data_folder": hparams["data_folder"],
            "save_folder": hparams["save_folder"],
            "tr_splits": hparams["train_splits"],
            "dev_splits": hparams["dev_splits"],
            "merge_name": "train.csv",
            "skip_prep": hparams["skip_prep"],
        },
    )
    pipeline.run()
