#!/usr/bin/env python3
"""Phoneme recognition on a frozen SSL upstream (SUPERB PR, LibriSpeech 100 h).

Usage::

    python train.py hparams/pr_ctc_linear.yaml --data_folder=/data/LibriSpeech \
        --lexicon_file=/data/librispeech-lexicon.txt \
        --upstream_source=results/skill_wavlm/1986/student

The built-in analog works too (``--data_folder`` = a folder made by
``speechbrain_skill.data.analogs.phonemes.build_pr_analog``; its lexicon is
``<data_folder>/lexicon.txt``, the default). PER per test split goes to
``test_results.json``, the learned layer weights to
``layer_weights.{json,png}``.
"""

import sys
from pathlib import Path

import speechbrain as sb
import torch
from hyperpyyaml import load_hyperpyyaml
from libriphone_prepare import (
    check_libriphone_layout,
    prepare_libriphone,
    read_lexicon,
)
from speechbrain.utils.distributed import run_on_main

from speechbrain_skill.data.dataio import make_audio_dataset
from speechbrain_skill.downstream.token_ctc import PhoneCTCBrain
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
    """Datasets (train, valid, one per test split) with phone targets."""
    tokenizer = hparams["tokenizer"]
    phones = sorted(
        {p for pron in read_lexicon(hparams["lexicon_file"]).values() for p in pron}
    )
    tokenizer.load_or_create(
        path=hparams["tokenizer_file"],
        from_iterables=[phones],
        special_labels={"blank_label": hparams["blank_index"]},
    )

    @sb.utils.data_pipeline.takes("phn")
    @sb.utils.data_pipeline.provides("tokens")
    def phone_pipeline(phn):
        return torch.LongTensor(tokenizer.encode_sequence(phn.split()))

    phone_dir = Path(hparams["save_folder"]) / "phones"

    def dataset(csv_path, train):
        data = make_audio_dataset(
            csv_path,
            random_crop=False,
            sort="ascending",
            max_duration=hparams["max_duration"] if train else None,
            warn_fraction=hparams["duration_filter_warn_fraction"],
        )
        data.add_dynamic_item(phone_pipeline)
        data.set_output_keys(["id", "sig", "tokens"])
        return data

    train = dataset(hparams["train_csv"], train=True)
    valid = dataset(hparams["valid_csv"], train=False)
    tests = {
        split: dataset(phone_dir / f"{split}.csv", False)
        for split in hparams["test_splits"]
    }
    return train, valid, tests, len(tokenizer)


if __name__ == "__main__":
    hparams_file, run_opts, overrides = parse_recipe_arguments(sys.argv[1:])
    sb.utils.distributed.ddp_init_group(run_opts)
    # Plain settings first: a bad value, data folder, missing split or lexicon
    # fails before the yaml builds (and maybe downloads) the upstream.
    settings = read_settings(hparams_file, overrides)
    check_run_options(settings, run_opts)
    check_data_folder(
        settings["data_folder"],
        skip_prep=settings["skip_prep"],
        manifests=[settings["train_csv"], settings["valid_csv"]],
    )
    if not settings["skip_prep"]:
        check_libriphone_layout(
            settings["data_folder"],
            settings["lexicon_file"],
            [
                *settings["train_splits"],
                *settings["dev_splits"],
                *settings["test_splits"],
            ],
        )
    check_positive(settings, ["number_of_epochs", "batch_size"])
    lock_output_folder(settings["output_folder"])
    with open(hparams_file, encoding="utf-8") as fin:
        hparams = load_hyperpyyaml(fin, overrides)
    sb.create_experiment_directory(
        experiment_directory=hparams["output_folder"],
        hyperparams_to_save=hparams_file,
        overrides=overrides,
    )
    run_on_main(
        prepare_libriphone,
        kwargs={
            "data_folder": hparams["data_folder"],
            "save_folder": hparams["save_folder"],
            "lexicon_file": hparams["lexicon_file"],
            "tr_splits": hparams["train_splits"],
            "dev_splits": hparams["dev_splits"],
            "te_splits": hparams["test_splits"],
            "oov_warn_fraction": hparams["oov_warn_fraction"],
            "skip_prep": hparams["skip_prep"],
        },
    )
    train_data, valid_data, test_datasets, vocab_size = dataio_prepare(hparams)
    head = hparams["head"](vocab_size=vocab_size)
    hparams["checkpointer"].add_recoverable("head", head)
    brain = PhoneCTCBrain(
        modules={"upstream": hparams["upstream"], "head": head},
        opt_class=hparams["opt_class"],
        hparams=hparams["brain_hparams"],
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
    )
    brain.fit(
        hparams["epoch_counter"],
        train_data,
        valid_data,
        train_loader_kwargs=hparams["train_dataloader_opts"],
        valid_loader_kwargs=hparams["valid_dataloader_opts"],
    )
    for split, test_data in test_datasets.items():
        brain.evaluate(
            test_data,
            name=split,
            min_key="PER",
            test_loader_kwargs=hparams["test_dataloader_opts"],
        )
    end_process_group()
