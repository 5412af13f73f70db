"""Query-by-example spoken term detection by DTW on upstream features (SUPERB QbE).

No training: for every hidden state (layer) of the upstream, each spoken
query is searched in each document by subsequence DTW, SUPERB's settings
(s3prl ``quesst14_dtw``): features normalised per dimension over the whole
set, distance ``exp(cosine distance) - 1`` with every query frame's row
min-max normalised, asymmetric steps (the query advances one frame per step,
the document 0, 1 or 2), open begin and end in the document, cost divided by
the query length. The score of a (query, document) trial is minus that cost,
standardised over the documents of the query. A query shorter than
``min_query_frames`` scores 0 everywhere. The layer is chosen by the MTWV of
the development queries and reported on the evaluation queries.
"""

import numpy as np
import torch

from speechbrain_skill.downstream.superb_metrics import maximum_term_weighted_value


def cosine_exp_distance(query, doc):
    """exp(cosine distance) - 1 between every query frame and document frame.

    Example
    -------
    >>> q = np.array([[1.0, 0.0]]); d = np.array([[1.0, 0.0], [0.0, 1.0]])
    >>> np.round(cosine_exp_distance(q, d), 4).tolist()
    [[0.0, 1.7183]]
    """
    q = query / np.clip(np.linalg.norm(query, axis=1, keepdims=True), 1e-9, None)
    d = doc / np.clip(np.linalg.norm(doc, axis=1, keepdims=True), 1e-9, None)
    return np.exp(1.0 - q @ d.T) - 1.0


def minmax_rows(dist):
    """Scale each row of a distance matrix to [0, 1].

    Example
    -------
    >>> minmax_rows(np.array([[2.0, 4.0, 3.0]])).tolist()
    [[0.0, 1.0, 0.5]]
    """
    low = dist.min(axis=1, keepdims=True)
    high = dist.max(axis=1, keepdims=True)
    return (dist - low) / np.clip(high - low, 1e-9, None)


def subsequence_dtw_cost(dist):
    """Best alignment cost of the whole query inside any part of the document.

    Asymmetric steps: from (i - 1, j), (i - 1, j - 1) or (i - 1, j - 2) to
    (i, j); the path starts in any document frame and ends in any; the cost
    (sum of the distances on the path) is divided by the query length.

    Arguments
    ---------
    dist : numpy.ndarray
        (query frames, document frames) distances.

    Returns
    -------
    float

    Example
    -------
    >>> dist = np.array([[5.0, 0.0, 5.0, 5.0], [5.0, 5.0, 5.0, 0.0]])
    >>> subsequence_dtw_cost(dist)  # 0 at (0, 1), then a 2-frame step to (1, 3)
    0.0
    >>> subsequence_dtw_cost(np.array([[1.0, 3.0], [2.0, 2.0]]))
    1.5
    """
    acc = dist[0].copy()
    for row in dist[1:]:
        best = acc.copy()
        best[1:] = np.minimum(best[1:], acc[:-1])
        best[2:] = np.minimum(best[2:], acc[:-2])
        best[0] = acc[0]
        acc = row + best
    return float(acc.min() / dist.shape[0])


def match_scores(queries, docs, min_query_frames=5):
    """Standardised detection scores of every (query, document) trial.

    Arguments
    ---------
    queries, docs : dict
        Name -> (frames, dim) numpy features (already normalised).
    min_query_frames : int
        Shorter queries score 0 in every document.

    Returns
    -------
    dict
        (query, document) -> score (higher: more likely a detection).
    """
    scores = {}
    doc_items = sorted(docs.items())
    for query_name, query in sorted(queries.items()):
        if len(query) < min_query_frames:
            scores.update({(query_name, name): 0.0 for name, _ in doc_items})
            continue
        raw = np.array(
            [
                -subsequence_dtw_cost(minmax_rows(cosine_exp_distance(query, doc)))
                for _, doc in doc_items
            ]
        )
        raw = (raw - raw.mean()) / max(raw.std(), 1e-9)
        scores.update(
            {(query_name, name): float(s) for (name, _), s in zip(doc_items, raw)}
        )
    return scores


def normalise_features(features):
    """Per-dimension standardisation over all frames of all utterances.

    Arguments
    ---------
    features : dict
        Name -> (frames, dim) numpy array.

    Returns
    -------
    dict

    Example
    -------
    >>> feats = {"a": np.array([[1.0], [3.0]]), "b": np.array([[5.0]])}
    >>> out = normalise_features(feats)
    >>> round(float(np.concatenate(list(out.values())).mean()), 6)
    0.0
    """
    frames = np.concatenate(list(features.values()))
    mean, std = frames.mean(axis=0), np.clip(frames.std(axis=0), 1e-9, None)
    return {name: (value - mean) / std for name, value in features.items()}


@torch.no_grad()
def hidden_state_features(upstream, wav, device="cpu"):
    """Every hidden state of one utterance, as (frames, dim) numpy arrays.

    Arguments
    ---------
    upstream : SSLUpstream
        Its ``model`` returns the stacked hidden states.
    wav : torch.Tensor
        1-D waveform at 16 kHz.
    device : str
        Where the model runs.

    Returns
    -------
    list of numpy.ndarray
        One per hidden state (0 = input of the first transformer layer).
    """
    hidden, _ = upstream.model(wav.unsqueeze(0).to(device), None)
    return [state[0].float().cpu().numpy() for state in hidden]


def extract_all(upstream, wavs, device="cpu", progressbar=True):
    """Hidden states of every utterance; unusable audio is skipped and counted.

    Arguments
    ---------
    upstream : SSLUpstream
        The upstream.
    wavs : dict
        Name -> audio path.
    device : str
        Where the model runs.
    progressbar : bool
        Show a progress bar.

    Returns
    -------
    features : dict
        Name -> list of per-layer (frames, dim) arrays.
    skipped : dict
        Name -> reason, for files that could not be read.
    """
    from tqdm import tqdm

    from speechbrain_skill.data.audio import BadAudioError, read_audio

    features, skipped = {}, {}
    for name, path in tqdm(
        sorted(wavs.items()), desc="features", leave=False, disable=not progressbar
    ):
        try:
            wav = read_audio(path)
        except BadAudioError as err:
            skipped[name] = err.reason
            continue
        features[name] = hidden_state_features(upstream, wav, device)
    return features, skipped


def evaluate_qbe(queries, documents, truths, beta=None, min_query_frames=5):
    """Choose the layer on ``dev`` by MTWV and report every query set with it.

    Arguments
    ---------
    queries : dict
        Set (``dev``, ``eval``) -> name -> per-layer features.
    documents : dict
        Name -> per-layer features.
    truths : dict
        Set -> set of (query, document) occurrences.
    beta : float, optional
        TWV false-alarm weight (default: QUESST 2014's).
    min_query_frames : int
        Shorter queries score 0.

    Returns
    -------
    results : dict
        Set -> {"MTWV", "layer", "queries"}; ``dev`` also has ``per_layer``.
    scores : dict
        Set -> the trial scores at the chosen layer.
    """
    num_layers = len(next(iter(documents.values())))

    def at_layer(query_set, layer):
        """Detection scores of a query set on one hidden state."""
        features = {f"q:{n}": f[layer] for n, f in queries[query_set].items()}
        features.update({f"d:{n}": f[layer] for n, f in documents.items()})
        features = normalise_features(features)
        scores = match_scores(
            {n[2:]: v for n, v in features.items() if n.startswith("q:")},
            {n[2:]: v for n, v in features.items() if n.startswith("d:")},
            min_query_frames,
        )
        return maximum_term_weighted_value(scores, truths[query_set], beta)[0], scores

    per_layer = [at_layer("dev", layer)[0] for layer in range(num_layers)]
    best = int(np.argmax(per_layer))
    results, chosen = {}, {}
    for query_set in queries:
        mtwv, scores = at_layer(query_set, best)
        results[query_set] = {
            "MTWV": round(float(mtwv), 6),
            "layer": best,
            "queries": len(queries[query_set]),
        }
        chosen[query_set] = scores
    results["dev"]["per_layer"] = [round(float(v), 6) for v in per_layer]
    return results, chosen


def write_stdlist(path, scores, threshold=2.0):
    """The detections as a NIST/QUESST ``stdlist.xml`` (for the official scorer).

    Arguments
    ---------
    path : str or os.PathLike
        Output file.
    scores : dict
        (query, document) -> score.
    threshold : float
        Scores above it are marked ``YES`` (SUPERB: 2 standard deviations).
    """
    import xml.etree.ElementTree as ET

    root = ET.Element(
        "stdlist",
        termlist_filename="benchmark.stdlist.xml",
        indexing_time="1.00",
        language="english",
        index_size="1",
        system_id="speechbrain_skill",
    )
    terms = {}
    for (query, doc), score in sorted(scores.items()):
        if query not in terms:
            terms[query] = ET.SubElement(
                root,
                "detected_termlist",
                termid=query,
                term_search_time="1.0",
                oov_term_count="1",
            )
        ET.SubElement(
            terms[query],
            "term",
            file=doc,
            channel="1",
            tbeg="0.000",
            dur="0.00",
            score=f"{score:.4f}",
            decision="YES" if score > threshold else "NO",
        )
    ET.ElementTree(root).write(str(path), encoding="UTF-8", xml_declaration=True)
