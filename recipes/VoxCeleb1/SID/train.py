#!/usr/bin/env python3
"""Speaker identification on a frozen SSL upstream (VoxCeleb1 identification).

Usage::

    python train.py hparams/sid_mean_pool.yaml --data_folder=/data/VoxCeleb1 \
        --upstream_source=results/skill_wavlm/1986/student
    torchrun --nproc_per_node=2 train.py hparams/sid_mean_pool.yaml --data_folder=...

The built-in corpus works too (``--data_folder`` = a generated corpus: its
voices are the speakers). Test accuracy goes to ``test_results.json``, the
learned layer weights to ``layer_weights.{json,png}``.
"""

import sys

import speechbrain as sb
from hyperpyyaml import load_hyperpyyaml
from speechbrain.utils.distributed import run_on_main
from voxceleb1_prepare import prepare_voxceleb1_sid

from speechbrain_skill.downstream.classification import train_and_evaluate
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
    run_on_main(
        prepare_voxceleb1_sid,
        kwargs={
            "data_folder": hparams["data_folder"],
            "save_folder": hparams["save_folder"],
            "split_file": hparams["split_file"],
            "data_format": hparams["data_format"],
            "skip_prep": hparams["skip_prep"],
        },
    )
    train_and_evaluate(hparams, run_opts)
