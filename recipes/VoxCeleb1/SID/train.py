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

from speechbrain_skill.downstream.classification import UtteranceClassificationBrain
from speechbrain_skill.downstream.data import (
    classification_datasets,
    train_loader_options,
)
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
    # Plain settings first: a bad value, data folder or run option fails
    # before the yaml builds (and maybe downloads) the upstream.
    settings = read_settings(hparams_file, overrides)
    check_run_options(settings, run_opts)
    check_data_folder(
        settings["data_folder"],
        skip_prep=settings["skip_prep"],
        manifests=[settings["train_csv"], settings["valid_csv"]],
    )
    check_positive(settings, ["number_of_epochs", "batch_size", "eval_batch_size"])
    # One run per output folder: a second run stops here, naming the first.
    lock_output_folder(settings["output_folder"])
    with open(hparams_file, encoding="utf-8") as fin:
        hparams = load_hyperpyyaml(fin, overrides)
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

    # Datasets and label encoder
    datasets, label_encoder = classification_datasets(
        train_csv=hparams["train_csv"],
        valid_csv=hparams["valid_csv"],
        test_csv=hparams["test_csv"],
        label_key=hparams["label_key"],
        label_encoder=hparams["label_encoder"],
        label_encoder_file=hparams["label_encoder_file"],
        labels=hparams["labels"],
        train_max_seconds=hparams["train_max_seconds"],
        eval_max_seconds=hparams["eval_max_seconds"],
    )

    # The head has one output per label; the checkpointer keeps it.
    head = hparams["head"](num_classes=len(label_encoder))
    hparams["checkpointer"].add_recoverable("head", head)
    brain = UtteranceClassificationBrain(
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
        train_loader_kwargs=train_loader_options(
            hparams["train_dataloader_opts"],
            datasets["train"],
            balance_classes=hparams["balance_classes"],
            label_key=hparams["label_key"],
            seed=hparams["seed"],
        ),
        valid_loader_kwargs=hparams["valid_dataloader_opts"],
    )

    # Test: the best checkpoint (accuracy) on the test set
    brain.evaluate(
        datasets["test"],
        name="test",
        max_key="accuracy",
        test_loader_kwargs=hparams["test_dataloader_opts"],
    )

    # DDP: leave the process group before exit (gloo can abort a rank at exit)
    end_process_group()
