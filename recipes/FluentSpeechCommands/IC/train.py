#!/usr/bin/env python3
"""Intent classification on a frozen SSL upstream (SUPERB IC, Fluent Speech Commands).

Usage::

    python train.py hparams/ic_mean_pool.yaml \
        --data_folder=/data/fluent_speech_commands_dataset \
        --upstream_source=results/skill_wavlm/1986/student

The built-in analog works too (``--data_folder`` = a folder made by
``speechbrain_skill.data.analogs.intents.build_ic_analog``). Test accuracy
(all three slots right) goes to ``test_results.json``, the learned layer
weights to ``layer_weights.{json,png}``.
"""

import sys

import speechbrain as sb
from fluent_commands_prepare import check_fluent_layout, prepare_fluent_commands
from hyperpyyaml import load_hyperpyyaml
from speechbrain.utils.distributed import run_on_main

from speechbrain_skill.downstream.intent import IntentBrain, intent_datasets
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
    # Plain settings first: a bad value, data folder or layout fails before
    # the yaml builds (and maybe downloads) the upstream.
    settings = read_settings(hparams_file, overrides)
    check_run_options(settings, run_opts)
    check_data_folder(
        settings["data_folder"],
        skip_prep=settings["skip_prep"],
        manifests=[settings["train_csv"], settings["valid_csv"]],
    )
    if not settings["skip_prep"]:
        check_fluent_layout(settings["data_folder"])
    check_positive(settings, ["number_of_epochs", "batch_size", "eval_batch_size"])
    lock_output_folder(settings["output_folder"])
    with open(hparams_file, encoding="utf-8") as fin:
        hparams = load_hyperpyyaml(fin, overrides)
    sb.create_experiment_directory(
        experiment_directory=hparams["output_folder"],
        hyperparams_to_save=hparams_file,
        overrides=overrides,
    )
    run_on_main(
        prepare_fluent_commands,
        kwargs={
            "data_folder": hparams["data_folder"],
            "save_folder": hparams["save_folder"],
            "skip_prep": hparams["skip_prep"],
        },
    )
    datasets, slot_sizes = intent_datasets(
        {
            "train": hparams["train_csv"],
            "valid": hparams["valid_csv"],
            "test": hparams["test_csv"],
        },
        hparams["slots"],
        hparams["save_folder"],
        train_max_seconds=hparams["train_max_seconds"],
    )
    head = hparams["head"](slot_sizes=slot_sizes)
    hparams["checkpointer"].add_recoverable("head", head)
    brain = IntentBrain(
        modules={"upstream": hparams["upstream"], "head": head},
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
        max_key="accuracy",
        test_loader_kwargs=hparams["test_dataloader_opts"],
    )
    end_process_group()
