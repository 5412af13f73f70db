#!/usr/bin/env python3
"""Emotion recognition on a frozen SSL upstream (IEMOCAP, SUPERB ER protocol).

Usage::

    python train.py hparams/er_mean_pool.yaml --data_folder=/data/IEMOCAP \
        --upstream_source=results/skill_wavlm/1986/student

Each fold (``folds``, session k held out for test) trains a fresh head in
``<output_folder>/fold<k>`` (resumable: a finished fold is evaluated from its
best checkpoint); ``<output_folder>/test_results.json`` then holds the
accuracy averaged over folds and each fold's accuracy.
"""

import json
import sys
from pathlib import Path

import speechbrain as sb
from hyperpyyaml import load_hyperpyyaml
from iemocap_prepare import prepare_iemocap
from speechbrain.utils.distributed import if_main_process, run_on_main

from speechbrain_skill.downstream.brain import update_results
from speechbrain_skill.downstream.classification import UtteranceClassificationBrain
from speechbrain_skill.downstream.data import (
    classification_datasets,
    train_loader_options,
)
from speechbrain_skill.training.checks import (
    ConfigurationError,
    check_data_folder,
    check_positive,
    check_run_options,
    read_settings,
)
from speechbrain_skill.training.command_line import parse_recipe_arguments
from speechbrain_skill.training.distributed import end_process_group
from speechbrain_skill.training.run_lock import lock_output_folder


def fold_average(fold_results):
    """Accuracy averaged over folds, with each fold's accuracy.

    Example
    -------
    >>> fold_average({1: {"accuracy": 50.0, "utterances": 4},
    ...               2: {"accuracy": 70.0, "utterances": 6}})["accuracy"]
    60.0
    """
    accuracies = {str(k): stats["accuracy"] for k, stats in fold_results.items()}
    return {
        "accuracy": round(sum(accuracies.values()) / len(accuracies), 4),
        "fold_accuracy": accuracies,
        "folds": len(accuracies),
        "utterances": sum(stats["utterances"] for stats in fold_results.values()),
    }


def run_fold(hparams_file, overrides, fold, run_opts):
    """Train and test one fold; its test statistics."""
    fold_overrides = (
        f"{overrides}\ntest_fold: {fold}" if overrides else f"test_fold: {fold}"
    )
    with open(hparams_file, encoding="utf-8") as fin:
        hparams = load_hyperpyyaml(fin, fold_overrides)
    Path(hparams["fold_folder"]).mkdir(parents=True, exist_ok=True)
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
    brain = UtteranceClassificationBrain(
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
        train_loader_kwargs=train_loader_options(
            hparams["train_dataloader_opts"],
            datasets["train"],
            balance_classes=hparams["balance_classes"],
            label_key=hparams["label_key"],
            seed=hparams["seed"],
        ),
        valid_loader_kwargs=hparams["valid_dataloader_opts"],
    )
    brain.evaluate(
        datasets["test"],
        name="test",
        max_key="accuracy",
        test_loader_kwargs=hparams["test_dataloader_opts"],
    )
    return json.loads(Path(hparams["fold_results_file"]).read_text())


if __name__ == "__main__":
    hparams_file, run_opts, overrides = parse_recipe_arguments(sys.argv[1:])
    sb.utils.distributed.ddp_init_group(run_opts)
    settings = read_settings(hparams_file, overrides)
    check_run_options(settings, run_opts)
    check_data_folder(settings["data_folder"], skip_prep=settings["skip_prep"])
    check_positive(settings, ["number_of_epochs", "batch_size", "eval_batch_size"])
    folds = settings["folds"]
    if not folds or any(fold not in (1, 2, 3, 4, 5) for fold in folds):
        raise ConfigurationError(f"folds must be sessions among 1..5, got {folds}.")
    lock_output_folder(settings["output_folder"])
    sb.create_experiment_directory(
        experiment_directory=settings["output_folder"],
        hyperparams_to_save=hparams_file,
        overrides=overrides,
    )
    # Preparation before any model loads: a wrong layout stops here.
    run_on_main(
        prepare_iemocap,
        kwargs={
            "data_folder": settings["data_folder"],
            "save_folder": settings["manifest_folder"],
            "valid_fraction": settings["valid_fraction"],
            "seed": settings["seed"],
            "analog_seed": settings["analog_seed"],
            "analog_utterances_per_style": settings["analog_utterances_per_style"],
        },
    )
    fold_results = {}
    upstream = None
    for fold in folds:
        document = run_fold(hparams_file, overrides, fold, run_opts)
        fold_results[fold] = document["results"]["test"]
        upstream = document["upstream"]
    if if_main_process():
        update_results(
            settings["results_file"],
            "test",
            fold_average(fold_results),
            metric="accuracy",
            higher_is_better=True,
            upstream=upstream,
        )
    end_process_group()
