"""Datasets of the utterance-classification recipes (keyword spotting, speaker ID).

Both recipes read train / valid / test csv manifests with a label column
(``label`` for keywords, ``spk_id`` for speakers); the label encoder maps the
labels to indices, either from a fixed list or from the training labels (any
label set; the recipes' default). A validation or test label the encoder
does not know stops the run with the labels named.

The recipes' ``train.py`` pass their settings explicitly.
"""

import speechbrain as sb
from speechbrain.dataio.sampler import BalancingDataSampler

from speechbrain_skill.data.dataio import make_audio_dataset


def classification_datasets(
    train_csv,
    valid_csv,
    test_csv,
    label_key,
    label_encoder,
    label_encoder_file,
    labels=None,
    train_max_seconds=None,
    eval_max_seconds=None,
):
    """Build the three datasets and the label encoder.

    Arguments
    ---------
    train_csv, valid_csv, test_csv : str
        The manifests.
    label_key : str
        The label column (``label``, ``spk_id``).
    label_encoder : speechbrain.dataio.encoder.CategoricalEncoder
        The encoder to fill (or load).
    label_encoder_file : str
        Where the encoder is saved / loaded from.
    labels : list of str, optional
        A fixed label set (its order gives the indices); None: the training
        labels.
    train_max_seconds : float, optional
        Random crops of longer training utterances.
    eval_max_seconds : float, optional
        Crops of longer evaluation utterances.

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
    >>> settings = _example_settings(tempfile.mkdtemp())
    >>> datasets, encoder = classification_datasets(**settings)
    >>> item = datasets["train"][0]
    >>> item["spk_id"], item["label_encoded"].tolist(), item["sig"].shape
    ('s1', [0], torch.Size([8000]))
    >>> len(encoder), os.path.isfile(settings["label_encoder_file"])
    (2, True)
    """
    datasets = {
        "train": make_audio_dataset(
            train_csv,
            max_crop_seconds=train_max_seconds,
            random_crop=True,
            extra_keys=[label_key],
        )
    }
    for split, csv_path in (("valid", valid_csv), ("test", test_csv)):
        datasets[split] = make_audio_dataset(
            csv_path,
            max_crop_seconds=eval_max_seconds,
            random_crop=False,
            sort="ascending",
            extra_keys=[label_key],
        )
    encoder = label_encoder
    encoder.load_or_create(
        path=label_encoder_file,
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
        """The label's index as a tensor."""
        return encoder.encode_sequence_torch([label])

    for dataset in datasets.values():
        dataset.add_dynamic_item(label_pipeline)
        dataset.set_output_keys(["id", "sig", label_key, "label_encoded"])
    return datasets, encoder


def train_loader_options(loader_options, train_data, balance_classes, label_key, seed):
    """Training loader options, with a class-balancing sampler when asked.

    Arguments
    ---------
    loader_options : dict
        The recipe's ``train_dataloader_opts``.
    train_data : DynamicItemDataset
        The training set.
    balance_classes : bool
        Sample classes uniformly (replaces shuffling).
    label_key : str
        The label column.
    seed : int
        Seed of the balancing sampler.

    Returns
    -------
    dict
        Keyword arguments of the training DataLoader.

    Example
    -------
    >>> import tempfile
    >>> settings = _example_settings(tempfile.mkdtemp())
    >>> datasets, _ = classification_datasets(**settings)
    >>> options = {"batch_size": 2, "shuffle": True}
    >>> sorted(train_loader_options(options, datasets["train"], True, "spk_id", 0))
    ['batch_size', 'sampler']
    """
    options = dict(loader_options)
    if balance_classes:
        options.pop("shuffle", None)
        options["sampler"] = BalancingDataSampler(train_data, key=label_key, seed=seed)
    return options


def _example_settings(folder):
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
    }
