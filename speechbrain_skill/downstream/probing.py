r"""Linear probes on frozen features: what did a pretrained model learn.

Each utterance becomes one vector per hidden state (its frames mean-pooled)
and a linear classifier (:class:`RidgeProbe`, ridge regression on one-hot
targets) predicts a label from it. Feature sources:

``<model source>``
    Anything the downstream recipes take as an upstream (one loader,
    :func:`~speechbrain_skill.lobes.upstream.load_upstream_model`): a student
    directory (pruned or not), a hub id, a local folder or ``builtin:<name>``;
    every hidden state is probed.
``random:<model source>``
    The same architecture, randomly initialised (seed 0): the untrained
    baseline of the same shape.
``mfcc``
    39 Kaldi-style MFCCs with deltas (20 ms frames), mean-pooled.
``whisper:<folder>``
    A Whisper encoder saved by transformers (the Whisper distillation
    recipe's ``whisper_folder``): the teacher of ``builtin:whisper-wavlm``,
    probed like its student (state 0 = the convolution output without the
    positions, as in the recipe's targets; at most 30 s per utterance).

Two tasks, on utterances the teacher never trained on:

* speaker: fit on one manifest (``--speaker_train``, e.g. dev-clean), score on
  another (``--speaker_test``, test-clean) with the same speakers.
* word: the built-in ``keywords`` split (single command words),
  cross-validated with speaker-disjoint folds, so a probe must recognise the
  word in voices it was not fitted on.

For each source and task, the L2 strength and the hidden state are chosen by
cross-validation on the training part only; the reported accuracy is on the
held-out part. Per-layer accuracies are kept too.

Command line::

    python -m speechbrain_skill.downstream.probing --speaker_train dev-clean.csv \
        --speaker_test test-clean.csv --words keywords.csv \
        --sources builtin:tiny-wavlm random:builtin:tiny-wavlm mfcc \
        --output results/probe
"""

import argparse
import csv
import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from speechbrain_skill.data.audio import BadAudioError, read_audio
from speechbrain_skill.lobes.hf_ssl import random_ssl_model

logger = logging.getLogger(__name__)

RIDGE_ALPHAS = (0.1, 1.0, 10.0, 100.0, 1000.0)  # on standardised features
INNER_FOLDS = 4
WORD_FOLDS = 4


# ---------------------------------------------------------------- features


def save_random_model_like(source, path, seed=0):
    """Save a random model shaped like ``source`` as a ``save_pretrained`` folder.

    Arguments
    ---------
    source : str
        Model whose configuration is copied.
    path : str or os.PathLike
        Output folder.
    seed : int
        Seed of the initialisation.

    Returns
    -------
    str

    Example
    -------
    >>> import tempfile, os
    >>> from speechbrain_skill.lobes.tiny_models import save_tiny_model
    >>> source = save_tiny_model(tempfile.mkdtemp())
    >>> out = save_random_model_like(source, tempfile.mkdtemp())
    >>> sorted(os.listdir(out))
    ['config.json', 'model.safetensors', 'preprocessor_config.json']
    """
    from speechbrain_skill.pretraining.export import export_pretrained

    return export_pretrained(random_ssl_model(source, seed), path)


class ModelPooler:
    """Mean-pooled hidden states of a frozen model, one (L+1, dim) array per utterance.

    Arguments
    ---------
    source : str
        Any upstream source of
        :func:`~speechbrain_skill.lobes.upstream.load_upstream_model`
        (student directory, HF model, ``builtin:``, ``random:<source>``).
    device : str
        Device.

    Example
    -------
    >>> import tempfile
    >>> from speechbrain_skill.lobes.tiny_models import save_tiny_model
    >>> pooler = ModelPooler("random:" + save_tiny_model(tempfile.mkdtemp()))
    >>> pooler(torch.randn(16000)).shape
    (5, 32)
    """

    def __init__(self, source, device="cpu"):
        from speechbrain_skill.lobes.upstream import load_upstream_model

        self.model, self.kind = load_upstream_model(source)
        self.model.to(device).eval()
        self.device = device

    @torch.no_grad()
    def __call__(self, wav):
        """Pool one waveform (samples,) -> numpy (L+1, dim)."""
        hidden, _ = self.model(wav.reshape(1, -1).to(self.device))
        return hidden[:, 0].mean(dim=1).float().cpu().numpy()


class MFCCPooler:
    """Mean-pooled MFCCs (+ deltas), shape (1, 39) per utterance.

    Example
    -------
    >>> MFCCPooler()(torch.randn(16000)).shape
    (1, 39)
    """

    def __init__(self):
        from speechbrain_skill.pretraining.features import MFCCFeaturizer

        # No per-utterance normalisation: it would zero the pooled mean.
        self.featurizer = MFCCFeaturizer(normalize=False)

    def __call__(self, wav):
        """Pool one waveform (samples,) -> numpy (1, 39)."""
        return self.featurizer(wav).mean(dim=0, keepdim=True).numpy()


class WhisperPooler:
    """Mean-pooled hidden states of a Whisper encoder, one (L+1, d_model) array.

    Each utterance is padded to Whisper's 30 s window and only its own frames
    are pooled, as many as a WavLM gives for the same audio, like the Whisper
    distillation recipe's targets (longer utterances: their first 30 s).

    Arguments
    ---------
    folder : str
        A ``transformers`` ``WhisperEncoder`` ``save_pretrained`` folder.
    device : str
        Device.

    Example
    -------
    >>> import tempfile
    >>> from speechbrain_skill.pretraining.whisper_ct2 import (
    ...     ct2_to_whisper_encoder, random_ct2_whisper_encoder)
    >>> folder = tempfile.mkdtemp()
    >>> tensors = random_ct2_whisper_encoder(mels=80, positions=1500)
    >>> ct2_to_whisper_encoder(tensors).save_pretrained(folder)
    >>> WhisperPooler(folder)(torch.randn(16000)).shape
    (2, 8)
    """

    def __init__(self, folder, device="cpu"):
        from transformers import WhisperFeatureExtractor
        from transformers.models.whisper.modeling_whisper import WhisperEncoder

        self.encoder = WhisperEncoder.from_pretrained(folder).eval().to(device)
        self.extractor = WhisperFeatureExtractor(
            feature_size=self.encoder.config.num_mel_bins
        )
        self.layers = list(range(self.encoder.config.encoder_layers + 1))

    def __call__(self, wav):
        """Pool one waveform (samples,) -> numpy (L+1, d_model)."""
        from speechbrain_skill.pretraining.whisper_targets import (
            WINDOW_SAMPLES,
            wavlm_frames,
            whisper_hidden_states,
        )

        wav = wav[:WINDOW_SAMPLES]
        # The frames of the utterance itself, counted as the recipe's targets are.
        frames = max(1, wavlm_frames(len(wav)))
        states = whisper_hidden_states(
            self.encoder, self.extractor, wav.numpy(), self.layers
        )
        return states[:frames].mean(dim=0).float().numpy()


def make_pooler(source, device="cpu"):
    """The pooler for a feature source name (see the module docstring).

    Example
    -------
    >>> type(make_pooler("mfcc")).__name__
    'MFCCPooler'
    """
    if source == "mfcc":
        return MFCCPooler()
    if source.startswith("whisper:"):
        return WhisperPooler(source[len("whisper:") :], device=device)
    return ModelPooler(source, device=device)


def read_manifest(csv_path, label_column):
    r"""Rows (id, wav, label, speaker) of a csv manifest.

    Example
    -------
    >>> import tempfile
    >>> path = tempfile.mktemp(suffix=".csv")
    >>> with open(path, "w") as f:
    ...     _ = f.write("ID,duration,wav,spk_id,wrd\nu1,1.0,a.flac,7,YES\n")
    >>> read_manifest(path, "wrd")
    [('u1', 'a.flac', 'YES', '7')]
    """
    with open(csv_path, newline="") as handle:
        return [
            (row["ID"], row["wav"], row[label_column], row.get("spk_id", ""))
            for row in csv.DictReader(handle)
        ]


def pool_manifest(pooler, rows):
    """Pool every utterance of a manifest; unreadable files are skipped.

    Arguments
    ---------
    pooler : callable
        Waveform -> (num_states, dim) array.
    rows : list of tuple
        From :func:`read_manifest`.

    Returns
    -------
    features : numpy.ndarray
        (num_states, num_utterances, dim).
    kept : list of tuple
        The rows that were used.
    """
    features, kept = [], []
    for row in rows:
        try:
            wav = read_audio(row[1])
        except BadAudioError as err:
            logger.warning("Skipping %s: %s", row[0], err)
            continue
        features.append(pooler(wav))
        kept.append(row)
    if not features:
        raise ValueError("No readable audio in the probe manifest.")
    return np.stack(features, axis=1), kept


# ---------------------------------------------------------------- the probe


class RidgeProbe:
    """Linear classifier by ridge regression on one-hot targets, all L2 strengths.

    Features are standardised with the training statistics; the weights
    ``W = (X^T X + alpha I)^-1 X^T Y`` (targets in {-1, 1}, centred) come from
    one SVD of ``X``, so every ``alpha`` of the grid costs one small product.
    It is scikit-learn's ``RidgeClassifier`` rule: a linear probe whose fit is
    closed-form and deterministic (a logistic regression picks nearly the same
    classes at a much higher cost with cross-validation over layers).

    Arguments
    ---------
    x : numpy.ndarray
        (n, dim) training features.
    y : numpy.ndarray
        (n,) integer labels in [0, num_classes).
    num_classes : int
        Number of classes.

    Example
    -------
    >>> rng = np.random.RandomState(0)
    >>> x = np.concatenate([rng.randn(20, 2) - 3, rng.randn(20, 2) + 3])
    >>> y = np.array([0] * 20 + [1] * 20)
    >>> probe = RidgeProbe(x, y, 2)
    >>> float((probe.predict(x, alpha=1.0) == y).mean())
    1.0
    """

    def __init__(self, x, y, num_classes):
        x = np.asarray(x, dtype=np.float64)
        self.mean = x.mean(axis=0, keepdims=True)
        self.std = x.std(axis=0, keepdims=True) + 1e-8
        targets = -np.ones((len(y), num_classes))
        targets[np.arange(len(y)), np.asarray(y)] = 1.0
        self.bias = targets.mean(axis=0)
        u, self.singular, vt = np.linalg.svd(
            (x - self.mean) / self.std, full_matrices=False
        )
        self.v = vt.T
        self.projected = u.T @ (targets - self.bias)

    def weights(self, alpha):
        """(dim, num_classes) weights for L2 strength ``alpha``."""
        shrink = self.singular / (self.singular**2 + alpha)
        return self.v @ (shrink[:, None] * self.projected)

    def predict(self, x, alpha):
        """Class of every row of ``x`` (n, dim)."""
        scaled = (np.asarray(x, dtype=np.float64) - self.mean) / self.std
        return (scaled @ self.weights(alpha) + self.bias).argmax(axis=1)


def _folds(n, k, seed, groups=None):
    """Index folds: random, or by group (every group in one fold).

    With fewer groups than ``k``, one fold per group (leave-one-group-out).
    """
    rng = np.random.RandomState(seed)
    if groups is None:
        order = rng.permutation(n)
        return [order[i::k] for i in range(k)]
    unique = np.array(sorted(set(groups)))
    k = min(k, len(unique))
    rng.shuffle(unique)
    fold_of = {g: i % k for i, g in enumerate(unique)}
    assignment = np.array([fold_of[g] for g in groups])
    return [np.flatnonzero(assignment == i) for i in range(k)]


def cv_accuracies(x, y, num_classes, alphas, folds):
    """Mean held-out accuracy of :class:`RidgeProbe` for each ``alpha``.

    Example
    -------
    >>> x = np.array([[0.0], [0.1], [5.0], [5.1]] * 3)
    >>> y = np.array([0, 0, 1, 1] * 3)
    >>> cv_accuracies(x, y, 2, [1.0], _folds(12, 3, 0)).tolist()
    [1.0]
    """
    scores = np.zeros(len(alphas))
    for held in folds:
        train = np.setdiff1d(np.arange(len(y)), held)
        probe = RidgeProbe(x[train], y[train], num_classes)
        for i, alpha in enumerate(alphas):
            scores[i] += (probe.predict(x[held], alpha) == y[held]).mean()
    return scores / len(folds)


def select_and_score(
    train_x, train_y, test_x, test_y, num_classes, seed=0, groups=None
):
    """Choose (hidden state, L2) by inner CV on the training part; score on test.

    Arguments
    ---------
    train_x, test_x : numpy.ndarray
        (num_states, n, dim) pooled features.
    train_y, test_y : numpy.ndarray
        Integer labels.
    num_classes : int
        Number of classes.
    seed : int
        Seed of the inner folds.
    groups : list, optional
        A group (speaker) per training row: the inner folds then hold out
        whole groups, as the outer split does, so the choice rewards what
        the test asks for (a word in an unseen voice), not what is easy
        within the voices already seen. At most :data:`INNER_FOLDS` folds;
        with fewer groups, one per group.

    Returns
    -------
    dict
        ``accuracy`` (test, chosen state), ``layer``, ``alpha``,
        ``cv_accuracy`` and ``per_layer`` test accuracies (each with its own
        CV-chosen L2).
    """
    folds = _folds(len(train_y), INNER_FOLDS, seed, groups=groups)
    per_layer, best = [], None
    for layer in range(train_x.shape[0]):
        scores = cv_accuracies(
            train_x[layer], train_y, num_classes, RIDGE_ALPHAS, folds
        )
        choice = int(np.flatnonzero(scores == scores.max())[-1])  # ties: stronger L2
        alpha = RIDGE_ALPHAS[choice]
        probe = RidgeProbe(train_x[layer], train_y, num_classes)
        test_acc = float((probe.predict(test_x[layer], alpha) == test_y).mean())
        per_layer.append(round(100 * test_acc, 2))
        if best is None or scores[choice] > best["cv_accuracy"]:
            best = dict(
                layer=layer,
                alpha=alpha,
                cv_accuracy=float(scores[choice]),
                accuracy=test_acc,
            )
    best["accuracy"] = round(100 * best["accuracy"], 2)
    best["cv_accuracy"] = round(100 * best["cv_accuracy"], 2)
    best["per_layer"] = per_layer
    return best


def _encode(labels, classes=None):
    classes = sorted(set(labels)) if classes is None else classes
    index = {c: i for i, c in enumerate(classes)}
    return np.array([index[c] for c in labels]), classes


def speaker_probe(train_feats, train_rows, test_feats, test_rows, seed=0):
    """Speaker identification: fit on one set of utterances, score on another."""
    train_y, classes = _encode([r[2] for r in train_rows])
    known = [i for i, r in enumerate(test_rows) if r[2] in set(classes)]
    test_y, _ = _encode([test_rows[i][2] for i in known], classes)
    return select_and_score(
        train_feats, train_y, test_feats[:, known], test_y, len(classes), seed
    )


def word_probe(feats, rows, folds=WORD_FOLDS, seed=0):
    """Word identification, cross-validated over speaker-disjoint folds.

    With fewer speakers than ``folds``, each speaker is one fold
    (leave-one-speaker-out).
    """
    y, classes = _encode([r[2] for r in rows])
    speakers = [r[3] for r in rows]
    results = []
    for held in _folds(len(y), folds, seed, groups=speakers):
        train = np.setdiff1d(np.arange(len(y)), held)
        results.append(
            select_and_score(
                feats[:, train],
                y[train],
                feats[:, held],
                y[held],
                len(classes),
                seed,
                groups=[speakers[i] for i in train],
            )
        )
    return dict(
        accuracy=round(float(np.mean([r["accuracy"] for r in results])), 2),
        fold_accuracies=[r["accuracy"] for r in results],
        layers=[r["layer"] for r in results],
        per_layer=np.mean([r["per_layer"] for r in results], axis=0).round(2).tolist(),
        num_classes=len(classes),
    )


# ---------------------------------------------------------------- running


@dataclass
class ProbeResults:
    """Results of all sources on both tasks.

    Attributes
    ----------
    results : dict
        Source -> {"speaker": ..., "word": ...}.
    settings : dict
        Manifests, sizes, seconds.
    """

    results: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)

    def table(self):
        """Markdown table: accuracy (chosen hidden state) per source and task."""
        lines = [
            "| features | speaker ID acc. % (state) "
            "| word ID acc. % (states per fold) |",
            "|---|---|---|",
        ]
        for source, res in self.results.items():
            spk, wrd = res.get("speaker"), res.get("word")
            spk_cell = f"{spk['accuracy']:.1f} ({spk['layer']})" if spk else "-"
            wrd_cell = (
                f"{wrd['accuracy']:.1f} ({','.join(map(str, wrd['layers']))})"
                if wrd
                else "-"
            )
            lines.append(f"| {source} | {spk_cell} | {wrd_cell} |")
        return "\n".join(lines)


def run_probes(
    sources, speaker_train=None, speaker_test=None, words=None, device="cpu", seed=0
):
    """Pool features of every source and run the speaker and word probes.

    Arguments
    ---------
    sources : list of str
        Feature sources (model sources, ``random:<source>``, ``mfcc``).
    speaker_train, speaker_test : str, optional
        Manifests for the speaker probe (column ``spk_id``).
    words : str, optional
        Manifest of single-word utterances (column ``wrd``).
    device : str
        Device of the models.
    seed : int
        Seed of the folds.

    Returns
    -------
    ProbeResults
    """
    start = time.time()
    out = ProbeResults(
        settings=dict(
            speaker_train=speaker_train,
            speaker_test=speaker_test,
            words=words,
            ridge_alphas=list(RIDGE_ALPHAS),
            inner_folds=INNER_FOLDS,
            word_folds=WORD_FOLDS,
            seed=seed,
        )
    )
    spk_train = read_manifest(speaker_train, "spk_id") if speaker_train else None
    spk_test = read_manifest(speaker_test, "spk_id") if speaker_test else None
    word_rows = read_manifest(words, "wrd") if words else None
    # Every source is loaded before any pooling, so a bad one fails at once.
    poolers = {source: make_pooler(source, device=device) for source in sources}
    for source, pooler in poolers.items():
        res = {}
        if spk_train and spk_test:
            tr_x, tr_rows = pool_manifest(pooler, spk_train)
            te_x, te_rows = pool_manifest(pooler, spk_test)
            res["speaker"] = speaker_probe(tr_x, tr_rows, te_x, te_rows, seed)
            out.settings["speaker_sizes"] = [len(tr_rows), len(te_rows)]
        if word_rows:
            w_x, w_rows = pool_manifest(pooler, word_rows)
            res["word"] = word_probe(w_x, w_rows, seed=seed)
            out.settings["word_size"] = len(w_rows)
        out.results[source] = res
        logger.info("Probed %s: %s", source, res)
    out.settings["seconds"] = round(time.time() - start, 1)
    return out


def build_parser():
    """Command-line options."""
    parser = argparse.ArgumentParser(
        description="Linear probes (speaker ID, word ID) on frozen features."
    )
    parser.add_argument("--sources", nargs="+", required=True)
    parser.add_argument("--speaker_train", help="csv with spk_id (fit)")
    parser.add_argument("--speaker_test", help="csv with spk_id (score)")
    parser.add_argument("--words", help="csv of single-word utterances (wrd)")
    parser.add_argument("--output", required=True, help="output folder")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def main(argv=None):
    """Command-line entry point: writes probe_results.json and probe_results.md."""
    args = build_parser().parse_args(argv)
    if not (args.words or (args.speaker_train and args.speaker_test)):
        sys.exit("Give --words and/or both --speaker_train and --speaker_test.")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    results = run_probes(
        args.sources,
        speaker_train=args.speaker_train,
        speaker_test=args.speaker_test,
        words=args.words,
        device=args.device,
        seed=args.seed,
    )
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    (output / "probe_results.json").write_text(
        json.dumps(dict(results=results.results, settings=results.settings), indent=2)
    )
    table = results.table()
    (output / "probe_results.md").write_text(table + "\n")
    print(table)
    print(f"\nWritten to {output} in {results.settings['seconds']} s.")
    return results


if __name__ == "__main__":
    main()
