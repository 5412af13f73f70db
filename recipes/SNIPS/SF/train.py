#!/usr/bin/env python3
"""Slot filling on a frozen SSL upstream (SUPERB SF, Audio SNIPS).

Usage::

    python train.py hparams/sf_ctc_bilstm.yaml --data_folder=/data/SNIPS \
        --upstream_source=results/skill_wavlm/1986/student

The built-in analog works too (``--data_folder`` = a folder made by
``speechbrain_skill.data.analogs.slots.build_sf_analog``). Slot-type F1 and
slot-value CER (with the WER and CER of the words) go to
``test_results.json``, the learned layer weights to
``layer_weights.{json,png}``.
"""

import sys

import speechbrain as sb
import torch
from hyperpyyaml import load_hyperpyyaml
from snips_prepare import check_snips_layout, prepare_snips
from speechbrain.utils.distributed import run_on_main

from speechbrain_skill.data.dataio import make_audio_dataset
from speechbrain_skill.data.manifests import read_manifest
from speechbrain_skill.downstream.token_ctc import (
    SlotCTCBrain,
    is_slot_tag,
    slot_text_to_tokens,
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


def dataio_prepare(hparams):
    """Datasets with slot-tagged character targets; the vocabulary size."""
    csv_files = {
        "train": hparams["train_csv"],
        "valid": hparams["valid_csv"],
        "test": hparams["test_csv"],
    }
    # The slot inventory: every tag of the three splits (SUPERB: slots.txt).
    tags = sorted(
        {
            token
            for path in csv_files.values()
            for entry in read_manifest(path)
            for token in entry["tagged"].split()
            if is_slot_tag(token)
        }
    )
    alphabet = set(hparams["characters"])
    tokenizer = hparams["tokenizer"]
    tokenizer.load_or_create(
        path=hparams["tokenizer_file"],
        from_iterables=[list(hparams["characters"]) + tags],
        special_labels={"blank_label": hparams["blank_index"]},
    )

    @sb.utils.data_pipeline.takes("tagged")
    @sb.utils.data_pipeline.provides("tokens")
    def text_pipeline(tagged):
        tokens = [
            t for t in slot_text_to_tokens(tagged) if is_slot_tag(t) or t in alphabet
        ]
        return torch.LongTensor(tokenizer.encode_sequence(tokens))

    datasets = {}
    for split, path in csv_files.items():
        datasets[split] = make_audio_dataset(
            path,
            random_crop=False,
            sort="ascending",
            max_duration=hparams["max_duration"] if split == "train" else None,
            warn_fraction=hparams["duration_filter_warn_fraction"],
        )
        datasets[split].add_dynamic_item(text_pipeline)
        datasets[split].set_output_keys(["id", "sig", "tokens"])
    return datasets, len(tokenizer)


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
        check_snips_layout(settings["data_folder"])
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
        prepare_snips,
        kwargs={
            "data_folder": hparams["data_folder"],
            "save_folder": hparams["save_folder"],
            "speakers": {
                "train": hparams["train_speakers"],
                "valid": hparams["valid_speakers"],
                "test": hparams["test_speakers"],
            },
            "skip_prep": hparams["skip_prep"],
        },
    )
    datasets, vocab_size = dataio_prepare(hparams)
    head = hparams["head"](vocab_size=vocab_size)
    hparams["checkpointer"].add_recoverable("head", head)
    brain = SlotCTCBrain(
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
        max_key="slot_type_f1",
        test_loader_kwargs=hparams["test_dataloader_opts"],
    )
    end_process_group()
