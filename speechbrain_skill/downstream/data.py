"""Datasets of the utterance-classification recipes (keyword spotting, speaker ID).

Both recipes read train / valid / test csv manifests with a label column
(``label`` for keywords, ``spk_id`` for speakers); the label encoder maps the
labels to indices, either from a fixed list or from the training labels (any
label set; the recipes' default). A validation or test label the encoder
does not know stops the run with the labels named.

Hyperparameters used: ``train_csv``, ``valid_csv``, ``test_csv``,
``label_key``, ``labels`` (list or null), ``label_encoder``,
``label_encoder_file``, ``train_max_seconds``, ``eval_max_seconds``,
``balance_classes``, ``seed``, ``train_dataloader_opts``.
"""

import speechbrain as sb
from speechbrain.dataio.sampler import BalancingDataSampler

from speechbrain_skill.data.dataio import make_audio_dataset


def classification_datasets(hparams):
    """Build the three datasets and the label encoder.

    Arguments
    ---------
    hparams : dict
        The loaded recipe hyperparameters (see the module docstring).

    Returns
    -------
    datasets : dict
        ``train``, ``valid``, ``test`` -> DynamicItemDataset with outputs
        ``id``, ``sig``, the label column and ``label_encoded``.
    label_encoder : speechbrain.dataio.encoder.CategoricalEncoder
        Loaded from / saved to ``label_encoder_file``.

    Example
    -------
    >>> import os, tempfile
    >>> hparams = _example_hparams(tempfile.mkdtemp())
    >>> datasets, encoder = classification_datasets(hparams)
    >>> item = datasets["train"][0]
    >>> item["spk_id"], item["label_encoded"].tolist(), item["sig"].shape
    ('s1', [0], torch.Size([8000]))
    >>> len(encoder), os.path.isfile(hparams["label_encoder_file"])
    (2, True)
    """
    label_key = hparams["label_key"]
    datasets = {
        "train": make_audio_dataset(
            hparams["train_csv"],
            max_crop_seconds=hparams["train_max_seconds"],
            random_crop=True,
            extra_keys=[label_key],
        )
    }
    for split in ("valid", "test"):
        datasets[split] = make_audio_dataset(
            hparams[f"{split}_csv"],
            max_crop_seconds=hparams["eval_max_seconds"],
            random_crop=False,
            sort="ascending",
            extra_keys=[label_key],
        )
    encoder = hparams["label_encoder"]
    labels = hparams["labels"]
    encoder.load_or_create(
        path=hparams["label_encoder_file"],
        from_iterables=[labels] if labels else [],
        from_didatasets=[] if labels else [datasets["train"]],
        output_key=label_key,
    )
    if labels:
        encoder.expect_len(len(labels))
    else:
        encoder.ignore_len()
    for split, dataset in datasets.items():
        found = {dataset.data[utt][label_key] for utt in dataset.data_ids}
        unknown = sorted(found - set(encoder.lab2ind))
        if unknown:
            source = "the labels list" if labels else "the training manifest"
            raise ValueError(
                f"{split} manifest has labels missing from {source}: {unknown[:10]}"
            )

    @sb.utils.data_pipeline.takes(label_key)
    @sb.utils.data_pipeline.provides("label_encoded")
    def label_pipeline(label):
        return encoder.encode_sequence_torch([label])

    for dataset in datasets.values():
        dataset.add_dynamic_item(label_pipeline)
        dataset.set_output_keys(["id", "sig", label_key, "label_encoded"])
    return datasets, encoder


def train_loader_options(hparams, train_data):
    """Training loader options, with a class-balancing sampler when asked.

    Arguments
    ---------
    hparams : dict
        Uses ``train_dataloader_opts``, ``balance_classes``, ``label_key``,
        ``seed``.
    train_data : DynamicItemDataset
        The training set.

    Returns
    -------
    dict
        Keyword arguments of the training DataLoader.

    Example
    -------
    >>> import tempfile
    >>> hparams = _example_hparams(tempfile.mkdtemp())
    >>> datasets, _ = classification_datasets(hparams)
    >>> sorted(train_loader_options(hparams, datasets["train"]))
    ['batch_size', 'sampler']
    """
    options = dict(hparams["train_dataloader_opts"])
    if hparams["balance_classes"]:
        options.pop("shuffle", None)
        options["sampler"] = BalancingDataSampler(
            train_data, key=hparams["label_key"], seed=hparams["seed"]
        )
    return options


def _example_hparams(folder):
    """Tiny manifests and settings for the examples above (two speakers)."""
    import os

    import numpy as np
    import soundfile as sf
    from speechbrain.dataio.encoder import CategoricalEncoder

    from speechbrain_skill.data.manifests import write_manifest

    rows = []
    for index, speaker in enumerate(["s1", "s2", "s1"]):
        wav = os.path.join(folder, f"u{index}.wav")
        sf.write(wav, np.zeros(8000, dtype="float32"), 16000)
        rows.append([f"u{index}", "0.5", wav, speaker])
    csv_path = os.path.join(folder, "data.csv")
    write_manifest(csv_path, ["ID", "duration", "wav", "spk_id"], rows)
    return {
        "train_csv": csv_path,
        "valid_csv": csv_path,
        "test_csv": csv_path,
        "label_key": "spk_id",
        "labels": None,
        "label_encoder": CategoricalEncoder(),
        "label_encoder_file": os.path.join(folder, "labels.txt"),
        "train_max_seconds": None,
        "eval_max_seconds": None,
        "balance_classes": True,
        "seed": 0,
        "train_dataloader_opts": {"batch_size": 2, "shuffle": True},
    }
