"""Intent classification on a frozen upstream (SUPERB IC, Fluent Speech Commands).

An intent is several slots (action, object, location), each a
classification of the whole utterance; the loss is the sum of the slots'
negative log-likelihoods and an utterance counts as right only when every
slot is right (SUPERB's accuracy).

Modules: ``upstream`` and ``head``
(:class:`~speechbrain_skill.downstream.heads.SlotClassifier`). Batches carry
``sig`` and ``slots_encoded`` (one class index per slot).
"""

import speechbrain as sb
import torch

from speechbrain_skill.downstream.brain import DownstreamBrain
from speechbrain_skill.training.modules import unwrap


def all_slots_right(predictions, labels):
    """(utterances with every slot right, utterances) of a batch.

    Arguments
    ---------
    predictions : list of torch.Tensor
        Per slot, (batch, classes) scores.
    labels : torch.Tensor
        (batch, slots) class indices.

    Returns
    -------
    tuple of int

    Example
    -------
    >>> preds = [torch.tensor([[0.9, 0.1], [0.2, 0.8]]), torch.tensor([[1.0], [1.0]])]
    >>> all_slots_right(preds, torch.tensor([[0, 0], [0, 0]]))
    (1, 2)
    """
    hits = torch.stack(
        [
            scores.argmax(dim=-1) == labels[:, slot]
            for slot, scores in enumerate(predictions)
        ],
        dim=1,
    )
    return int(hits.all(dim=1).sum()), int(hits.shape[0])


class IntentBrain(DownstreamBrain):
    """Sum of per-slot NLL losses; accuracy (%) = all slots right."""

    metric = "accuracy"
    higher_is_better = True

    def silent_batch(self):
        """One second of silence labelled with class 0 in every slot."""
        slots = len(unwrap(self.modules.head).slot_sizes)
        return super().silent_batch(slots_encoded=torch.zeros(slots, dtype=torch.long))

    def compute_forward(self, batch, stage):
        """Per-slot log-probabilities."""
        batch = batch.to(self.device)
        feats, feat_lens = self.upstream_features(batch)
        return self.modules.head(feats, feat_lens)

    def compute_objectives(self, predictions, batch, stage):
        """Sum of the slots' NLL; accuracy counts outside training."""
        labels = batch.slots_encoded.data.long()
        loss = sum(
            torch.nn.functional.nll_loss(scores.float(), labels[:, slot])
            for slot, scores in enumerate(predictions)
        )
        if stage != sb.Stage.TRAIN:
            correct, total = all_slots_right(predictions, labels)
            self.correct += correct
            self.total += total
        return loss

    def reset_metrics(self, stage):
        """Zero the counters."""
        self.correct = 0
        self.total = 0

    def summarize_metrics(self, stage):
        """Accuracy in percent and the number of utterances."""
        accuracy = 100.0 * self.correct / self.total if self.total else float("nan")
        return {"accuracy": round(accuracy, 4), "utterances": self.total}


def intent_datasets(csv_files, slots, encoder_folder, train_max_seconds=None):
    """Datasets with one encoded class per slot, encoders from the training set.

    As SUPERB does, each slot's classes are the values found in training; a
    validation or test value never seen in training stops the run, named.

    Arguments
    ---------
    csv_files : dict
        ``train`` / ``valid`` / ``test`` -> manifest with a column per slot.
    slots : sequence of str
        Slot columns (``action``, ``object``, ``location``).
    encoder_folder : str or os.PathLike
        Where ``<slot>_encoder.txt`` files are saved / loaded.
    train_max_seconds : float, optional
        Random crops of longer training utterances.

    Returns
    -------
    datasets : dict
        Split -> DynamicItemDataset with ``id``, ``sig``, ``slots_encoded``.
    slot_sizes : list of int
        Classes per slot.
    """
    from pathlib import Path

    from speechbrain.dataio.encoder import CategoricalEncoder

    from speechbrain_skill.data.dataio import make_audio_dataset

    datasets = {}
    for split, path in csv_files.items():
        train = split == "train"
        datasets[split] = make_audio_dataset(
            path,
            max_crop_seconds=train_max_seconds if train else None,
            random_crop=train,
            sort=None if train else "ascending",
            extra_keys=list(slots),
        )
    encoders = []
    for slot in slots:
        encoder = CategoricalEncoder()
        encoder.load_or_create(
            path=str(Path(encoder_folder) / f"{slot}_encoder.txt"),
            from_didatasets=[datasets["train"]],
            output_key=slot,
        )
        encoder.ignore_len()
        for split, data in datasets.items():
            unknown = sorted(
                {data.data[u][slot] for u in data.data_ids} - set(encoder.lab2ind)
            )
            if unknown:
                raise ValueError(
                    f"{split} manifest has {slot} values never seen in training: "
                    f"{unknown[:10]}"
                )
        encoders.append(encoder)

    @sb.utils.data_pipeline.takes(*slots)
    @sb.utils.data_pipeline.provides("slots_encoded")
    def slots_pipeline(*values):
        """Label indices of the three slots."""
        return torch.LongTensor(
            [encoder.lab2ind[value] for encoder, value in zip(encoders, values)]
        )

    for data in datasets.values():
        data.add_dynamic_item(slots_pipeline)
        data.set_output_keys(["id", "sig", "slots_encoded"])
    return datasets, [len(encoder) for encoder in encoders]
