#!/usr/bin/env python3
"""HuBERT-style masked-prediction pretraining of a Hugging Face WavLM.

Stages (each skipped when its output exists): csv manifests -> k-means frame
labels (MFCC for iteration 1, the hidden states of ``label_model`` for
iteration 2) -> masked prediction of the labels -> export of the encoder as a
``save_pretrained`` folder (``<output_folder>/export``).

Built-in corpus, tiny model (the shipped ``builtin:tiny-wavlm``)::

    python train.py hparams/hubert_wavlm.yaml --data_folder=data/builtin

LibriSpeech, Base size: see README.md.
"""

import json
import logging
import sys
import time

import speechbrain as sb
from hyperpyyaml import load_hyperpyyaml
from librispeech_prepare import prepare_librispeech
from speechbrain.utils.distributed import if_main_process, run_on_main

from speechbrain_skill.data.dataio import make_audio_dataset, make_dynamic_batch_sampler
from speechbrain_skill.pretraining.brain import HuBERTPretrainBrain
from speechbrain_skill.pretraining.collate import LabelledCropCollate
from speechbrain_skill.pretraining.features import make_featurizer
from speechbrain_skill.pretraining.labels import FrameLabels, prepare_cluster_labels
from speechbrain_skill.training.command_line import parse_recipe_arguments
from speechbrain_skill.training.distributed import end_process_group
from speechbrain_skill.training.run_lock import lock_output_folder

logger = logging.getLogger(__name__)


def prepare_labels(hparams, device):
    """Fit k-means on the training frames and label train / valid / test."""
    featurizer = make_featurizer(
        hparams["label_features"],
        source=hparams["label_model"],
        layer=hparams["label_layer"],
        normalize=hparams["label_normalize"],
        device=device,
    )
    return prepare_cluster_labels(
        hparams["train_csv"],
        {
            "train": hparams["train_csv"],
            "valid": hparams["valid_csv"],
            "test": hparams["test_csv"],
        },
        hparams["labels_folder"],
        featurizer,
        num_clusters=hparams["num_clusters"],
        max_fit_frames=hparams["kmeans_fit_frames"],
        max_fit_utterances=hparams["kmeans_fit_utterances"],
        max_iter=hparams["kmeans_max_iter"],
        num_init=hparams["kmeans_init"],
        seed=hparams["seed"],
        device=device,
    )


def dataio_prepare(hparams, label_paths):
    """Datasets and loader options: frame-aligned crops with their labels."""
    config = hparams["wavlm_config"]
    loaders = {}
    for name, csv_key, train in (
        ("train", "train_csv", True),
        ("valid", "valid_csv", False),
        ("test", "test_csv", False),
    ):
        dataset = make_audio_dataset(
            hparams[csv_key],
            min_duration=hparams["min_duration"],
            max_duration=hparams["max_duration"],
            warn_fraction=hparams["duration_filter_warn_fraction"],
        )
        sampler = make_dynamic_batch_sampler(
            dataset,
            hparams["max_batch_seconds"] if train else hparams["valid_batch_seconds"],
            num_buckets=hparams["num_buckets"],
            shuffle=train,
            seed=hparams["seed"],
            max_crop_seconds=hparams["max_crop_seconds"],
            max_batch_size=hparams["max_batch_size"],
        )
        collate = LabelledCropCollate(
            FrameLabels.load(label_paths[name]),
            max_crop_seconds=hparams["max_crop_seconds"],
            random_crop=train,
            conv_kernel=config.conv_kernel,
            conv_stride=config.conv_stride,
        )
        options = dict(
            batch_sampler=sampler,
            collate_fn=collate,
            num_workers=hparams["num_workers"],
        )
        loaders[name] = (dataset, options)
    return loaders


if __name__ == "__main__":
    hparams_file, run_opts, overrides = parse_recipe_arguments(sys.argv[1:])
    with open(hparams_file, encoding="utf-8") as fin:
        hparams = load_hyperpyyaml(fin, overrides)
    sb.utils.distributed.ddp_init_group(run_opts)
    # One run per output folder: a second run stops here, naming the first.
    lock_output_folder(hparams["output_folder"])
    sb.create_experiment_directory(
        experiment_directory=hparams["output_folder"],
        hyperparams_to_save=hparams_file,
        overrides=overrides,
    )
    device = run_opts["device"] or sb.utils.distributed.infer_device()

    run_on_main(
        prepare_librispeech,
        kwargs=dict(
            data_folder=hparams["data_folder"],
            save_folder=hparams["save_folder"],
            tr_splits=hparams["train_splits"],
            dev_splits=hparams["dev_splits"],
            te_splits=hparams["test_splits"],
            merge_name="train.csv",
            skip_prep=hparams["skip_prep"],
        ),
    )
    label_paths = run_on_main(prepare_labels, args=[hparams, device])  # broadcast
    loaders = dataio_prepare(hparams, label_paths)

    brain = HuBERTPretrainBrain(
        modules=hparams["modules"],
        opt_class=hparams["opt_class"],
        hparams=hparams["brain_hparams"],
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
    )
    start = time.time()
    brain.fit(
        hparams["epoch_counter"],
        loaders["train"][0],
        loaders["valid"][0],
        train_loader_kwargs=loaders["train"][1],
        valid_loader_kwargs=loaders["valid"][1],
    )
    fit_seconds = time.time() - start
    brain.evaluate(loaders["test"][0], test_loader_kwargs=loaders["test"][1])

    if if_main_process():
        summary = dict(
            iteration=hparams["iteration"],
            label_features=hparams["label_features"],
            num_clusters=hparams["num_clusters"],
            steps=brain.optimizer_step,
            fit_seconds_this_run=round(fit_seconds, 1),
            valid=getattr(brain, "valid_stats", None),
            test=getattr(brain, "test_stats", None),
            data_folder=str(hparams["data_folder"]),
            train_splits=hparams["train_splits"],
        )
        path = brain.export(hparams["export_folder"], summary=summary)
        print(
            "\n==== HuBERT pretraining summary ====\n"
            + json.dumps(summary, indent=2)
            + f"\nExported encoder (no head): {path}\n"
        )

    # DDP: leave the process group before exit (gloo can abort a rank at exit)
    end_process_group()
