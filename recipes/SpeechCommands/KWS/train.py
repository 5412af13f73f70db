#!/usr/bin/env python3
"""Keyword spotting on a frozen SSL upstream (Speech Commands v1, 12 classes).

Usage::

    python train.py hparams/kws_mean_pool.yaml --data_folder=/data/speech_commands \
        --upstream_source=results/skill_wavlm/1986/student
    torchrun --nproc_per_node=2 train.py hparams/kws_mean_pool.yaml --data_folder=...

The built-in corpus works too (``--data_folder`` = a corpus generated with
``--keywords_per_speaker``). Test accuracy goes to ``test_results.json``,
the learned layer weights to ``layer_weights.{json,png}``.
"""

import sys

import speechbrain as sb
from hyperpyyaml import load_hyperpyyaml
from speech_commands_prepare import prepare_speech_commands
from speechbrain.utils.distributed import run_on_main

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
        prepare_speech_commands,
        kwargs={
            "data_folder": hparams["data_folder"],
            "save_folder": hparams["save_folder"],
            "test_folder": hparams["test_folder"],
            "data_format": hparams["data_format"],
            "silence_fraction": hparams["silence_fraction"],
            "valid_fraction": hparams["valid_fraction"],
            "test_fraction": hparams["test_fraction"],
            "seed": hparams["seed"],
            "skip_prep": hparams["skip_prep"],
        },
    )
    train_and_evaluate(hparams, run_opts)
