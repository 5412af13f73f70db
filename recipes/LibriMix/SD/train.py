#!/usr/bin/env python3
"""Speaker diarization on a frozen SSL upstream (Libri2Mix, SUPERB SD protocol).

Usage::

    python train.py hparams/sd_lstm_pit.yaml --data_folder=/data/superb_sd \
        --upstream_source=results/skill_wavlm/1986/student

Trains the LSTM head with permutation-invariant BCE on ``train``, keeps the
checkpoint with the lowest ``dev`` DER and scores ``test``:
``test_results.json`` holds the DER by SUPERB's rule, its threshold and
median filter, and the DER at threshold 0.5.
"""

import sys

import speechbrain as sb
from hyperpyyaml import load_hyperpyyaml
from librimix_prepare import prepare_librimix_sd
from speechbrain.utils.distributed import run_on_main

from speechbrain_skill.data.dataio import make_audio_dataset
from speechbrain_skill.downstream.diarization import DiarizationBrain
from speechbrain_skill.training.checks import (
    check_data_folder,
    check_positive,
    check_run_options,
    read_settings,
)
from speechbrain_skill.training.command_line import parse_recipe_arguments
from speechbrain_skill.training.distributed import end_process_group
from speechbrain_skill.training.run_lock import lock_output_folder

if __name__ == "__main__":
    hparams_file, run_opts, overrides = parse_recipe_arguments(sys.argv[1:])
    sb.utils.distributed.ddp_init_group(run_opts)
    settings = read_settings(hparams_file, overrides)
    check_run_options(settings, run_opts)
    check_data_folder(
        settings["data_folder"],
        skip_prep=settings["skip_prep"],
        manifests=[settings["train_csv"], settings["valid_csv"], settings["test_csv"]],
    )
    check_positive(settings, ["number_of_epochs", "batch_size", "eval_batch_size"])
    lock_output_folder(settings["output_folder"])
    # Preparation before the yaml builds the upstream: a wrong layout stops here.
    run_on_main(
        prepare_librimix_sd,
        kwargs={
            "data_folder": settings["data_folder"],
            "save_folder": settings["save_folder"],
            "skip_prep": settings["skip_prep"],
            "analog_seed": settings["analog_seed"],
        },
    )
    with open(hparams_file, encoding="utf-8") as fin:
        hparams = load_hyperpyyaml(fin, overrides)
    sb.create_experiment_directory(
        experiment_directory=hparams["output_folder"],
        hyperparams_to_save=hparams_file,
        overrides=overrides,
    )
    datasets = {
        split: make_audio_dataset(
            hparams[f"{split}_csv"],
            random_crop=False,
            sort=None if split == "train" else "ascending",
            extra_keys=["segments"],
        )
        for split in ("train", "valid", "test")
    }
    brain = DiarizationBrain(
        modules={"upstream": hparams["upstream"], "head": hparams["head"]},
        opt_class=hparams["opt_class"],
        hparams=hparams["brain_hparams"],
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
    )
    brain.fit(
        hparams["epoch_counter"],
        datasets["train"],
        datasets["valid"],
        train_loader_kwargs=hparams["train_dataloader_opts"],
        valid_loader_kwargs=hparams["valid_dataloader_opts"],
    )
    brain.evaluate(
        datasets["test"],
        name="test",
        min_key="DER",
        test_loader_kwargs=hparams["test_dataloader_opts"],
    )
    end_process_group()
