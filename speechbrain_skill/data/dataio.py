"""Datasets, collation and batching shared by every recipe.

* :func:`make_audio_dataset` turns a csv manifest (ID, duration, wav, ...) into a
  SpeechBrain ``DynamicItemDataset`` whose ``sig`` item is a 16 kHz mono
  waveform, randomly cropped for training.
* :class:`SkipBadAudioCollate` pads the good examples and lists the bad ones
  (missing, corrupt, empty, too short, NaN/Inf) instead of crashing: a batch
  carries ``batch.skipped`` = [(id, reason), ...]; a batch with nothing usable
  is an empty :class:`SkippedBatch`.
* :func:`make_dynamic_batch_sampler` batches by total seconds of audio.
* :func:`make_audio_dataloader` is the simple loader for analysis tools.
"""

import logging
import os

import speechbrain as sb
import torch
from speechbrain.dataio.batch import PaddedBatch
from speechbrain.dataio.sampler import DynamicBatchSampler

from speechbrain_skill.data.audio import (
    SAMPLE_RATE,
    BadAudioError,
    crop,
    read_audio,
    reason_kind,
    seconds_to_samples,
)

logger = logging.getLogger(__name__)
# Share of the data a duration filter may remove before it warns loudly.
DURATION_FILTER_WARN_FRACTION = 0.2


class AudioBatch(PaddedBatch):
    """A SpeechBrain ``PaddedBatch`` that also lists the examples it had to skip."""

    def __init__(self, examples, skipped=(), **kwargs):
        super().__init__(examples, **kwargs)
        self.skipped = list(skipped)


class SkippedBatch:
    """A batch whose every example was unusable; it has length 0.

    Arguments
    ---------
    skipped : list of (str, str)
        (utterance id, reason) pairs.
    """

    def __init__(self, skipped):
        self.skipped = list(skipped)

    def __len__(self):
        return 0

    def to(self, *args, **kwargs):
        """Nothing to move; returns itself (mirrors ``PaddedBatch.to``)."""
        return self


class SkipBadAudioCollate:
    """Collate function that pads good examples and reports the bad ones.

    An example is bad when its ``sig`` item is a :class:`BadAudioError`
    (see :func:`make_audio_dataset`). Each bad example is logged once here with
    its reason; counting is left to the consumer through ``batch.skipped`` so
    that the count is right with several loader workers.

    A loader also collates batches that nobody consumes: SpeechBrain fetches
    one more batch before it sees that its step limit is reached, and loader
    workers prefetch. So that a file seen bad there still counts, a consumer
    may set ``record_path``: every skipped example is then also appended to
    that file as ``id<TAB>reason`` (from any worker process), and
    :func:`read_skip_records` reads it back.

    Example
    -------
    >>> collate = SkipBadAudioCollate()
    >>> batch = collate([
    ...     {"id": "a", "sig": torch.ones(5)},
    ...     {"id": "b", "sig": BadAudioError("b.flac", "missing")},
    ... ])
    >>> batch.sig.data.shape, batch.skipped
    (torch.Size([1, 5]), [('b', 'missing')])
    """

    record_path = None

    def __call__(self, examples):
        """Split, log and pad."""
        good, skipped = [], []
        for example in examples:
            sig = example.get("sig")
            if isinstance(sig, BadAudioError):
                logger.warning("Skipping %s: %s", example.get("id"), sig)
                skipped.append((example.get("id"), sig.reason))
            else:
                good.append(example)
        if skipped and self.record_path:
            lines = "".join(
                f"{utt_id}\t{' '.join(str(reason).split())}\n"
                for utt_id, reason in skipped
            )
            with open(self.record_path, "a", encoding="utf-8") as handle:
                handle.write(lines)  # one append per batch: workers do not interleave
        if not good:
            return SkippedBatch(skipped)
        return AudioBatch(good, skipped=skipped)


def read_skip_records(path):
    """The ``(id, reason)`` pairs a :class:`SkipBadAudioCollate` appended to ``path``.

    Example
    -------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "skipped.tsv")
    >>> collate = SkipBadAudioCollate()
    >>> collate.record_path = path
    >>> _ = collate([{"id": "b", "sig": BadAudioError("b.flac", "missing")}])
    >>> read_skip_records(path)
    [('b', 'missing')]
    >>> read_skip_records(os.path.join(tempfile.mkdtemp(), "none.tsv"))
    []
    """
    if not path or not os.path.isfile(path):
        return []
    with open(path, encoding="utf-8") as handle:
        return [
            tuple(line.rstrip("\n").split("\t", 1)) for line in handle if "\t" in line
        ]


def make_audio_pipeline(
    max_crop_seconds=None, random_crop=True, sample_rate=SAMPLE_RATE
):
    """Build the ``wav -> sig`` dynamic item: read, resample, downmix, crop.

    A bad file yields its :class:`BadAudioError` as ``sig`` (skipped at
    collation) instead of raising inside a loader worker.

    Arguments
    ---------
    max_crop_seconds : float, optional
        Crop longer utterances to this many seconds.
    random_crop : bool
        Random crop offset (training) or the first seconds (evaluation).
    sample_rate : int
        Model sample rate.

    Returns
    -------
    speechbrain.utils.data_pipeline.DynamicItem

    Example
    -------
    >>> pipeline = make_audio_pipeline(1.0)
    >>> isinstance(pipeline("no/such/file.flac"), BadAudioError)
    True
    """
    max_samples = seconds_to_samples(max_crop_seconds, sample_rate)

    @sb.utils.data_pipeline.takes("wav")
    @sb.utils.data_pipeline.provides("sig")
    def audio_pipeline(wav):
        """Read one file; a bad file is returned as its error (the collate skips it)."""
        try:
            audio = read_audio(wav, sample_rate=sample_rate)
        except BadAudioError as err:
            return err
        return crop(audio, max_samples, random_offset=random_crop)

    return audio_pipeline


def make_audio_dataset(
    csv_path,
    max_crop_seconds=None,
    random_crop=True,
    sort=None,
    min_duration=None,
    max_duration=None,
    max_utterances=None,
    extra_keys=(),
    replacements=None,
    warn_fraction=DURATION_FILTER_WARN_FRACTION,
):
    """Read a csv manifest into a dataset that outputs ``id`` and ``sig``.

    A duration filter (``min_duration`` / ``max_duration``) is checked by
    :func:`check_duration_filter`: counted, logged, a loud warning above
    ``warn_fraction``, an error when it leaves nothing; its counts are in the
    returned dataset's ``duration_filter`` attribute (None without a filter).

    Arguments
    ---------
    csv_path : str
        Manifest with at least the columns ID, duration, wav.
    max_crop_seconds : float, optional
        Crop longer utterances (random offset when ``random_crop``).
    random_crop : bool
        See :func:`make_audio_pipeline`.
    sort : str, optional
        ``ascending`` or ``descending`` by duration; None keeps the csv order.
    min_duration, max_duration : float, optional
        Keep utterances within this range (seconds).
    max_utterances : int, optional
        Keep only the first N (after sorting): calibration subsets.
    extra_keys : sequence of str
        Other csv columns to output (e.g. ``spk_id``, ``wrd``).
    replacements : dict, optional
        ``$key`` replacements in the csv (SpeechBrain convention).
    warn_fraction : float
        Share of the utterances the duration filter may remove before the
        warning.

    Returns
    -------
    speechbrain.dataio.dataset.DynamicItemDataset
    """
    dataset = sb.dataio.dataset.DynamicItemDataset.from_csv(
        csv_path, replacements=replacements or {}
    )
    duration_filter = None
    if min_duration is not None or max_duration is not None:
        duration_filter = check_duration_filter(
            [float(row["duration"]) for row in dataset.data.values()],
            min_duration,
            max_duration,
            name=str(csv_path),
            warn_fraction=warn_fraction,
        )
    key_min = {"duration": min_duration} if min_duration is not None else {}
    key_max = {"duration": max_duration} if max_duration is not None else {}
    if sort is not None or key_min or key_max or max_utterances is not None:
        dataset = dataset.filtered_sorted(
            key_min_value=key_min,
            key_max_value=key_max,
            sort_key="duration" if sort else None,
            reverse=sort == "descending",
            select_n=max_utterances,
        )
    dataset.add_dynamic_item(make_audio_pipeline(max_crop_seconds, random_crop))
    dataset.set_output_keys(["id", "sig", *extra_keys])
    dataset.duration_filter = duration_filter
    return dataset


def check_duration_filter(
    durations,
    min_duration=None,
    max_duration=None,
    name="the manifest",
    warn_fraction=DURATION_FILTER_WARN_FRACTION,
):
    """Count what a duration filter removes; warn loudly or stop when it is too much.

    Kept are the utterances with ``min_duration <= duration <= max_duration``
    (SpeechBrain's ``filtered_sorted``). Above ``warn_fraction`` removed, a
    warning says so; when nothing is left, a ``ValueError`` names the settings
    and the durations found.

    Arguments
    ---------
    durations : sequence of float
        Durations (seconds) of all utterances before filtering.
    min_duration, max_duration : float, optional
        The filter (None: no bound).
    name : str
        What the durations belong to (in messages).
    warn_fraction : float
        Share removed above which the warning is given.

    Returns
    -------
    dict
        ``utterances``, ``kept``, ``too_short``, ``too_long`` and the bounds.

    Example
    -------
    >>> check_duration_filter([0.5, 1.5, 3.0], min_duration=1.0, max_duration=2.0,
    ...                       warn_fraction=0.9)
    ... # doctest: +NORMALIZE_WHITESPACE
    {'min_duration': 1.0, 'max_duration': 2.0, 'utterances': 3, 'kept': 1,
     'too_short': 1, 'too_long': 1}
    """
    too_short = 0 if min_duration is None else sum(d < min_duration for d in durations)
    too_long = 0 if max_duration is None else sum(d > max_duration for d in durations)
    total = len(durations)
    stats = dict(
        min_duration=min_duration,
        max_duration=max_duration,
        utterances=total,
        kept=total - too_short - too_long,
        too_short=too_short,
        too_long=too_long,
    )
    found = f"{min(durations):.2f}-{max(durations):.2f} s" if durations else "none"
    setting = f"min_duration={min_duration}, max_duration={max_duration}"
    if stats["kept"] == 0:
        raise ValueError(
            f"The duration filter ({setting}) leaves none of the {total} "
            f"utterances of {name} (durations {found}). Lower --min_duration or "
            "raise --max_duration."
        )
    removed = (total - stats["kept"]) / total
    message = (
        f"{name}: the duration filter ({setting}) keeps {stats['kept']} of {total} "
        f"utterances: {too_short} shorter, {too_long} longer (durations {found})."
    )
    if removed > warn_fraction:
        logger.warning(
            "%s\n!!! That is %.0f%% of the data, more than %.0f%%: check "
            "min_duration / max_duration against these durations. !!!",
            message,
            100 * removed,
            100 * warn_fraction,
        )
    else:
        logger.info(message)
    return stats


def make_dynamic_batch_sampler(
    dataset,
    max_batch_seconds,
    num_buckets=20,
    shuffle=True,
    seed=0,
    max_crop_seconds=None,
    max_batch_size=None,
):
    """Batch by total seconds of audio (after cropping), with length buckets.

    Arguments
    ---------
    dataset : DynamicItemDataset
        Dataset with a ``duration`` field.
    max_batch_seconds : float
        Audio seconds per batch (per process under DDP).
    num_buckets : int
        Length buckets; more buckets, less padding, less randomness.
    shuffle : bool
        Reshuffle every epoch.
    seed : int
        Sampler seed.
    max_crop_seconds : float, optional
        The crop the dataset applies, so lengths are counted after cropping.
    max_batch_size : int, optional
        Cap on utterances per batch.

    Returns
    -------
    speechbrain.dataio.sampler.DynamicBatchSampler
    """
    durations = _durations(dataset)
    if max_crop_seconds is not None:
        durations = [min(d, max_crop_seconds) for d in durations]
    num_buckets = max(1, min(num_buckets, len(durations)))
    return DynamicBatchSampler(
        dataset,
        max_batch_length=max_batch_seconds,
        num_buckets=num_buckets,
        lengths_list=durations,
        shuffle=shuffle,
        batch_ordering="random" if shuffle else "ascending",
        max_batch_ex=max_batch_size,
        seed=seed,
    )


def _durations(dataset):
    return [float(dataset.data[data_id]["duration"]) for data_id in dataset.data_ids]


class SkippingLoader:
    """Iterate a loader, drop empty batches and record skipped examples.

    ``skipped`` maps each kind of reason
    (:func:`~speechbrain_skill.data.audio.reason_kind`) to the set of skipped
    utterance ids: a file met twice counts once.

    Arguments
    ---------
    loader : iterable
        Yields :class:`AudioBatch` / :class:`SkippedBatch`.
    """

    def __init__(self, loader):
        self.loader = loader
        self.skipped = {}

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        self.skipped = {}
        for batch in self.loader:
            for utt_id, reason in batch.skipped:
                self.skipped.setdefault(reason_kind(reason), set()).add(utt_id)
            if len(batch):
                yield batch

    @property
    def num_skipped(self):
        """Number of distinct skipped files in the last pass."""
        return sum(len(ids) for ids in self.skipped.values())


def make_audio_dataloader(
    csv_path,
    batch_size=8,
    max_utterances=None,
    seed=0,
    shuffle=False,
    max_seconds=None,
    num_workers=0,
):
    """A simple loader for analysis tools (calibration sets, probes).

    Batches of ``batch_size`` utterances sorted by duration (less padding);
    bad files are skipped and counted in the returned loader's ``skipped``.

    Arguments
    ---------
    csv_path : str
        Manifest (ID, duration, wav, ...).
    batch_size : int
        Utterances per batch.
    max_utterances : int, optional
        Use only this many utterances: a seeded random subset when ``seed`` is
        given and the manifest is larger.
    seed : int
        Seed of the subset choice and of shuffling.
    shuffle : bool
        Shuffle batches.
    max_seconds : float, optional
        Crop each utterance to its first ``max_seconds`` seconds.
    num_workers : int
        Loader workers.

    Returns
    -------
    SkippingLoader
        Iterable of :class:`AudioBatch` with ``batch.sig = (wavs, wav_lens)``.
    """
    dataset = make_audio_dataset(
        csv_path, max_crop_seconds=max_seconds, random_crop=False
    )
    ids = list(dataset.data_ids)
    if max_utterances is not None and max_utterances < len(ids):
        generator = torch.Generator().manual_seed(seed)
        chosen = torch.randperm(len(ids), generator=generator)[:max_utterances]
        keep = {ids[i] for i in chosen.tolist()}
        dataset = dataset.filtered_sorted(key_test={"id": lambda utt: utt in keep})
    dataset = dataset.filtered_sorted(sort_key="duration")
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        collate_fn=SkipBadAudioCollate(),
        num_workers=num_workers,
        generator=torch.Generator().manual_seed(seed),
    )
    return SkippingLoader(loader)
