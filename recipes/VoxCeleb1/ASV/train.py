#!/usr/bin/env python3
"""Speaker verification on a frozen SSL upstream (VoxCeleb1, SUPERB ASV protocol).

Usage::

    python train.py hparams/asv_xvector.yaml --data_folder=/data/VoxCeleb1 \
        --upstream_source=results/skill_wavlm/1986/student

Trains an x-vector head with AM-softmax on the training speakers, picks the
checkpoint by the EER of a validation trial list, and scores the test trial
list by cosine similarity: ``test_results.json`` holds EER (%) and minDCF.
"""

import sys

import speechbrain as sb
from hyperpyyaml import load_hyperpyyaml
from speechbrain.utils.distributed import run_on_main
from voxceleb1_asv_prepare import prepare_voxceleb1_asv

from speechbrain_skill.data.dataio import make_audio_dataset
from speechbrain_skill.downstream.speaker_verification import SpeakerVerificationBrain
from speechbrain_skill.training.checks import (
    check_data_folder,
    check_positive,
    check_run_options,
    read_settings,
)
from speechbrain_skill.training.command_line import parse_recipe_arguments
from speechbrain_skill.training.distributed import end_process_group
from speechbrain_skill.training.run_lock import lock_output_folder


def verification_datasets(hparams):
    """Train / valid with speaker classes (training speakers); test without."""
    datasets = {
        "train": make_audio_dataset(
            hparams["train_csv"],
            max_crop_seconds=hparams["train_max_seconds"],
            random_crop=True,
            extra_keys=["spk_id"],
        )
    }
    for split in ("valid", "test"):
        datasets[split] = make_audio_dataset(
            hparams[f"{split}_csv"],
            max_crop_seconds=hparams["eval_max_seconds"],
            random_crop=False,
            sort="ascending",
            extra_keys=["spk_id"],
        )
    encoder = hparams["label_encoder"]
    encoder.load_or_create(
        path=hparams["label_encoder_file"],
        from_didatasets=[datasets["train"]],
        output_key="spk_id",
    )
    encoder.ignore_len()

    @sb.utils.data_pipeline.takes("spk_id")
    @sb.utils.data_pipeline.provides("label_encoded")
    def label_pipeline(speaker):
        return encoder.encode_sequence_torch([speaker])

    for split in ("train", "valid"):
        datasets[split].add_dynamic_item(label_pipeline)
        datasets[split].set_output_keys(["id", "sig", "spk_id", "label_encoded"])
    datasets["test"].set_output_keys(["id", "sig", "spk_id"])
    return datasets, encoder


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
        prepare_voxceleb1_asv,
        kwargs={
            "data_folder": settings["data_folder"],
            "save_folder": settings["save_folder"],
            "trial_file": settings["trial_file"],
            "valid_fraction": settings["valid_fraction"],
            "num_valid_trials": settings["num_valid_trials"],
            "seed": settings["seed"],
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
    datasets, label_encoder = verification_datasets(hparams)
    loss = hparams["loss"](num_classes=len(label_encoder))
    hparams["checkpointer"].add_recoverable("loss", loss)
    brain = SpeakerVerificationBrain(
        modules={
            "upstream": hparams["upstream"],
            "head": hparams["head"],
            "loss": loss,
        },
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
        min_key="EER",
        test_loader_kwargs=hparams["test_dataloader_opts"],
    )
    end_process_group()
