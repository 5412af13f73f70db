#!/usr/bin/env python3
"""CTC ASR on a frozen SSL upstream (LibriSpeech train-clean-100, characters).

Usage::

    python train.py hparams/ctc_bilstm.yaml --data_folder=/data/LibriSpeech \
        --upstream_source=results/skill_wavlm/1986/student
    torchrun --nproc_per_node=2 train.py hparams/ctc_bilstm.yaml --data_folder=...

The built-in corpus works too (``--data_folder`` = a generated corpus). WER
and CER per test split go to ``test_results.json`` (per-utterance details
in ``wer_<split>.txt``), the learned layer weights to
``layer_weights.{json,png}``.
"""

import sys
from pathlib import Path

import speechbrain as sb
import torch
from hyperpyyaml import load_hyperpyyaml
from librispeech_prepare import prepare_librispeech
from speechbrain.utils.distributed import run_on_main

from speechbrain_skill.data.dataio import make_audio_dataset
from speechbrain_skill.downstream.asr import CTCBrain
from speechbrain_skill.training.checks import (
    check_data_folder,
    check_positive,
    check_run_options,
    read_settings,
)
from speechbrain_skill.training.command_line import parse_recipe_arguments
from speechbrain_skill.training.distributed import end_process_group
from speechbrain_skill.training.run_lock import lock_output_folder


def dataio_prepare(hparams):
    """Datasets (train, valid, one per test split) with character targets."""
    tokenizer = hparams["tokenizer"]
    alphabet = set(hparams["characters"])
    tokenizer.load_or_create(
        path=hparams["tokenizer_file"],
        from_iterables=[hparams["characters"]],
        special_labels={"blank_label": hparams["blank_index"]},
    )
    tokenizer.expect_len(hparams["output_neurons"])

    @sb.utils.data_pipeline.takes("wrd")
    @sb.utils.data_pipeline.provides("words", "tokens")
    def text_pipeline(wrd):
        words = [
            "".join(c for c in word if c in alphabet) for word in wrd.upper().split()
        ]
        text = " ".join(word for word in words if word)
        yield text
        yield torch.LongTensor(tokenizer.encode_sequence(list(text)))

    train_order = None if hparams["sorting"] == "random" else hparams["sorting"]

    def dataset(csv_path, train):
        data = make_audio_dataset(
            csv_path,
            max_crop_seconds=hparams["train_max_seconds"] if train else None,
            random_crop=train,
            sort=train_order if train else "ascending",
            max_duration=hparams["max_duration"] if train else None,
            warn_fraction=hparams["duration_filter_warn_fraction"],
        )
        data.add_dynamic_item(text_pipeline)
        data.set_output_keys(["id", "sig", "words", "tokens"])
        return data

    train = dataset(hparams["train_csv"], train=True)
    valid = dataset(hparams["valid_csv"], train=False)
    tests = {
        split: dataset(Path(hparams["save_folder"]) / f"{split}.csv", train=False)
        for split in hparams["test_splits"]
    }
    return train, valid, tests


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
    check_positive(settings, ["number_of_epochs", "batch_size"])
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
        prepare_librispeech,
        kwargs={
            "data_folder": hparams["data_folder"],
            "save_folder": hparams["save_folder"],
            "tr_splits": hparams["train_splits"],
            "dev_splits": hparams["dev_splits"],
            "te_splits": hparams["test_splits"],
            "merge_name": "train.csv",
            "skip_prep": hparams["skip_prep"],
        },
    )
    train_data, valid_data, test_datasets = dataio_prepare(hparams)
    brain = CTCBrain(
        modules=hparams["modules"],
        opt_class=hparams["opt_class"],
        hparams=hparams["brain_hparams"],
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
    )
    train_options = dict(hparams["train_dataloader_opts"])
    train_options["shuffle"] = hparams["sorting"] == "random"
    brain.fit(
        hparams["epoch_counter"],
        train_data,
        valid_data,
        train_loader_kwargs=train_options,
        valid_loader_kwargs=hparams["valid_dataloader_opts"],
    )
    for split, test_data in test_datasets.items():
        brain.evaluate(
            test_data,
            name=split,
            min_key="WER",
            test_loader_kwargs=hparams["test_dataloader_opts"],
        )

    # DDP: leave the process group before exit (gloo can abort a rank at exit)
    end_process_group()
