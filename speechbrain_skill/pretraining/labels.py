"""The labelling stage: frame features -> k-means -> one cluster label per frame.

:func:`prepare_cluster_labels` fits :class:`~.kmeans.KMeans` on a seeded
subsample of the training frames and writes, for each manifest, a
:class:`FrameLabels` file (every utterance's labels, one per 20 ms frame). The
stage is skipped when its outputs exist and were made with the same options.
"""

import csv
import json
import logging
import time
from pathlib import Path

import torch
from tqdm import tqdm

from speechbrain_skill.data.audio import BadAudioError
from speechbrain_skill.data.dataio import make_audio_dataset
from speechbrain_skill.pretraining.kmeans import KMeans

logger = logging.getLogger(__name__)

OPTIONS_FILE = "labels_options.json"
KMEANS_FILE = "kmeans.pt"


class FrameLabels:
    """Cluster labels of every frame of every utterance, stored flat.

    Arguments
    ---------
    labels : dict
        Utterance id -> 1-d integer tensor (one label per frame).
    num_clusters : int
        Size of the label vocabulary.

    Example
    -------
    >>> labels = FrameLabels({"a": torch.tensor([1, 2]), "b": torch.tensor([0])}, 3)
    >>> labels["a"].tolist(), len(labels), "c" in labels
    ([1, 2], 2, False)
    """

    def __init__(self, labels, num_clusters):
        self.num_clusters = int(num_clusters)
        self.ids = list(labels)
        self.index = {utt: i for i, utt in enumerate(self.ids)}
        lengths = torch.tensor([len(labels[u]) for u in self.ids], dtype=torch.long)
        self.offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)])
        dtype = torch.int16 if self.num_clusters <= 32767 else torch.int32
        values = [torch.as_tensor(labels[u]).to(dtype) for u in self.ids]
        self.values = torch.cat(values) if values else torch.zeros(0, dtype=dtype)

    def __len__(self):
        return len(self.ids)

    def __contains__(self, utt_id):
        return utt_id in self.index

    def __getitem__(self, utt_id):
        """Labels of one utterance as a long tensor."""
        i = self.index[utt_id]
        return self.values[self.offsets[i] : self.offsets[i + 1]].long()

    def counts(self):
        """How many frames carry each label (tensor of num_clusters)."""
        return torch.bincount(self.values.long(), minlength=self.num_clusters)

    def save(self, path):
        """Write to ``path`` (torch format, plain tensors and lists)."""
        torch.save(
            {
                "ids": self.ids,
                "offsets": self.offsets,
                "values": self.values,
                "num_clusters": self.num_clusters,
            },
            path,
        )

    @classmethod
    def load(cls, path):
        """Read a file written by :meth:`save`."""
        state = torch.load(path, weights_only=True)
        labels = cls({}, state["num_clusters"])
        labels.ids = list(state["ids"])
        labels.index = {utt: i for i, utt in enumerate(labels.ids)}
        labels.offsets = state["offsets"]
        labels.values = state["values"]
        return labels


def label_entropy_bits(counts):
    """Entropy (bits) of a label histogram: how evenly the clusters are used.

    Example
    -------
    >>> label_entropy_bits(torch.tensor([5, 5, 5, 5]))
    2.0
    """
    probs = counts.double() / counts.sum().clamp(min=1)
    probs = probs[probs > 0]
    return float(-(probs * probs.log2()).sum())


def _iterate_features(csv_path, featurizer, desc, max_utterances=None, seed=0):
    dataset = make_audio_dataset(csv_path, random_crop=False)
    order = list(range(len(dataset)))
    if max_utterances is not None and max_utterances < len(order):
        generator = torch.Generator().manual_seed(seed)
        order = sorted(torch.randperm(len(order), generator=generator)[:max_utterances])
        order = [int(i) for i in order]
    for i in tqdm(order, desc=desc, unit="utt", mininterval=5):
        item = dataset[i]
        if isinstance(item["sig"], BadAudioError):
            logger.warning("Skipping %s: %s", item["id"], item["sig"])
            continue
        yield item["id"], featurizer(item["sig"])


def fit_kmeans_on_manifest(
    csv_path,
    featurizer,
    num_clusters,
    max_fit_frames=200000,
    max_fit_utterances=None,
    max_iter=100,
    num_init=1,
    seed=0,
    device="cpu",
    return_features=False,
):
    """Fit k-means on the frames of (a seeded subset of) a manifest.

    Arguments
    ---------
    csv_path : str
        Training manifest.
    featurizer : callable
        Waveform -> (frames, dim) features.
    num_clusters : int
        Clusters.
    max_fit_frames : int
        Random frames kept for the fit (HuBERT fitted on a subset as well).
    max_fit_utterances : int, optional
        Read only this many utterances (seeded subset).
    max_iter, num_init : int
        See :class:`~.kmeans.KMeans`.
    seed : int
        Seed of the subsets and of the seeding.
    device : str
        Where the fit runs.
    return_features : bool
        Also return the features read (utterance id -> (frames, dim)); they
        are held in memory for the fit anyway, and labelling the same
        manifest can reuse them.

    Returns
    -------
    KMeans, or (KMeans, dict) with ``return_features``
    """
    features = dict(
        _iterate_features(
            csv_path, featurizer, "k-means features", max_fit_utterances, seed
        )
    )
    if not features:
        raise ValueError(f"No usable audio in {csv_path} to fit k-means on.")
    frames = torch.cat(list(features.values()))
    if frames.shape[0] > max_fit_frames:
        generator = torch.Generator().manual_seed(seed)
        frames = frames[torch.randperm(frames.shape[0], generator=generator)]
        frames = frames[:max_fit_frames]
    logger.info(
        "Fitting k-means (k=%d) on %d frames of dim %d.",
        num_clusters,
        frames.shape[0],
        frames.shape[1],
    )
    kmeans = KMeans(num_clusters, max_iter=max_iter, num_init=num_init, seed=seed)
    kmeans.fit(frames.to(device))
    return (kmeans, features) if return_features else kmeans


def label_manifest(csv_path, featurizer, kmeans, device="cpu", features=None):
    """Label every frame of every utterance of a manifest.

    Arguments
    ---------
    csv_path : str
        Manifest.
    featurizer : callable
        Waveform -> (frames, dim).
    kmeans : KMeans
        Fitted model.
    device : str
        Where the assignment runs.
    features : dict, optional
        Features already computed (utterance id -> (frames, dim)); the other
        utterances are read and featurised.

    Returns
    -------
    FrameLabels
    """
    features = features or {}
    if all(utt in features for utt in _manifest_ids(csv_path)):
        items = features.items()
    else:
        items = _iterate_features(csv_path, featurizer, f"labels {csv_path}")
    labels = {utt: kmeans.predict(feats.to(device)).cpu() for utt, feats in items}
    return FrameLabels(labels, kmeans.num_clusters)


def _manifest_ids(csv_path):
    with open(csv_path, newline="") as handle:
        return [row["ID"] for row in csv.DictReader(handle)]


def prepare_cluster_labels(
    fit_csv,
    manifests,
    output_folder,
    featurizer,
    num_clusters=100,
    max_fit_frames=200000,
    max_fit_utterances=None,
    max_iter=100,
    num_init=1,
    seed=0,
    device="cpu",
):
    r"""Fit k-means on ``fit_csv`` and write ``<output_folder>/<name>.pt`` per manifest.

    Arguments
    ---------
    fit_csv : str
        Manifest whose frames the k-means is fitted on (the training set).
    manifests : dict
        Name -> csv path of every manifest to label (train, valid, ...).
    output_folder : str
        Where the label files, ``kmeans.pt`` and the options go.
    featurizer : MFCCFeaturizer or HiddenStateFeaturizer
        See :func:`~.features.make_featurizer`.
    num_clusters, max_fit_frames, max_fit_utterances, max_iter, num_init : int
        See :func:`fit_kmeans_on_manifest`.
    seed : int
        Seed.
    device : str
        Device of the k-means.

    Returns
    -------
    dict
        Name -> label file path.

    Example
    -------
    >>> import csv, tempfile, numpy as np, soundfile as sf
    >>> from speechbrain_skill.pretraining.features import MFCCFeaturizer
    >>> folder = tempfile.mkdtemp()
    >>> sf.write(f"{folder}/a.wav", np.random.RandomState(0).randn(8000) * 0.1, 16000)
    >>> with open(f"{folder}/a.csv", "w") as f:
    ...     _ = f.write(f"ID,duration,wav\na,0.5,{folder}/a.wav\n")
    >>> paths = prepare_cluster_labels(
    ...     f"{folder}/a.csv", {"train": f"{folder}/a.csv"}, folder, MFCCFeaturizer(),
    ...     num_clusters=4)
    >>> len(FrameLabels.load(paths["train"])["a"])
    24
    """
    output_folder = Path(output_folder)
    paths = {name: str(output_folder / f"{name}.pt") for name in manifests}
    options = dict(
        fit_csv=str(fit_csv),
        manifests={name: str(path) for name, path in manifests.items()},
        features=featurizer.describe(),
        num_clusters=num_clusters,
        max_fit_frames=max_fit_frames,
        max_fit_utterances=max_fit_utterances,
        max_iter=max_iter,
        num_init=num_init,
        seed=seed,
    )
    options_path = output_folder / OPTIONS_FILE
    if (
        options_path.is_file()
        and json.loads(options_path.read_text()) == options
        and all(Path(p).is_file() for p in paths.values())
    ):
        logger.info("Frame labels in %s match the options; skipping.", output_folder)
        return paths
    output_folder.mkdir(parents=True, exist_ok=True)
    start = time.time()
    kmeans, fit_features = fit_kmeans_on_manifest(
        fit_csv,
        featurizer,
        num_clusters,
        max_fit_frames=max_fit_frames,
        max_fit_utterances=max_fit_utterances,
        max_iter=max_iter,
        num_init=num_init,
        seed=seed,
        device=device,
        return_features=True,
    )
    torch.save(kmeans.state_dict(), output_folder / KMEANS_FILE)
    summary = {}
    for name, csv_path in manifests.items():
        reuse = fit_features if str(csv_path) == str(fit_csv) else None
        labels = label_manifest(
            csv_path, featurizer, kmeans, device=device, features=reuse
        )
        labels.save(paths[name])
        counts = labels.counts()
        summary[name] = dict(
            utterances=len(labels),
            frames=int(counts.sum()),
            clusters_used=int((counts > 0).sum()),
            entropy_bits=round(label_entropy_bits(counts), 3),
        )
    del fit_features
    options_path.write_text(json.dumps(options, indent=2))
    (output_folder / "labels_summary.json").write_text(
        json.dumps(dict(summary, seconds=round(time.time() - start, 1)), indent=2)
    )
    logger.info(
        "Frame labels (%s, k=%d) written to %s in %.1f s: %s",
        featurizer.describe()["kind"],
        num_clusters,
        output_folder,
        time.time() - start,
        summary,
    )
    return paths
