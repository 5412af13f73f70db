"""Whisper encoder hidden states as frame targets, computed once per manifest.

Whisper's encoder takes 30 s of log-mel input and outputs 1500 frames (20 ms,
the frame rate of WavLM). Padding a 3 s utterance to 30 s would waste 90% of
the compute, so :func:`pack_windows` concatenates utterances into 30 s windows
(each starting on a 320-sample frame boundary) and :func:`compute_whisper_targets`
cuts every utterance's frames back out of its window's hidden states. The
result, :class:`FrameTargets`, holds for every utterance one float16 tensor
``(frames, layers, width)`` aligned with the WavLM frames of the same audio, so
:class:`~.collate.LabelledCropCollate` crops it like frame labels.

Neighbouring utterances are visible to Whisper's attention within a window;
the targets are therefore close to, not identical with, those of the utterance
alone, like the targets of a long recording cut into sentences.
"""

import logging
import time

import numpy as np
import torch

from speechbrain_skill.data.audio import BadAudioError
from speechbrain_skill.data.dataio import make_audio_dataset
from speechbrain_skill.lobes.frames import conv_output_lengths
from speechbrain_skill.pretraining.collate import (
    WAVLM_KERNELS,
    WAVLM_STRIDES,
    frame_hop,
)

logger = logging.getLogger(__name__)

WINDOW_SAMPLES = 480000  # Whisper's 30 s at 16 kHz
LOG_MEL = "log_mel"  # a target name: Whisper's log-mel input (see log_mel_frames)
# What the stored targets mean; part of a targets folder's options, so that targets
# written under an older definition are recomputed (2: state 0 without positions).
TARGETS_DEFINITION = 2
HOP = frame_hop(WAVLM_STRIDES)


class FrameTargets:
    """Float frame targets of every utterance, stored flat.

    Arguments
    ---------
    targets : dict
        Utterance id -> tensor ``(frames, layers, width)``.
    layers : list of int
        Which teacher hidden states the ``layers`` axis holds.

    Example
    -------
    >>> t = FrameTargets({"a": torch.ones(3, 2, 4), "b": torch.zeros(1, 2, 4)}, [1, 2])
    >>> t["a"].shape, len(t), "c" in t, t["b"].dtype
    (torch.Size([3, 2, 4]), 2, False, torch.float32)
    """

    def __init__(self, targets, layers):
        self.layers = list(layers)
        self.ids = list(targets)
        self.index = {utt: i for i, utt in enumerate(self.ids)}
        lengths = torch.tensor([len(targets[u]) for u in self.ids], dtype=torch.long)
        self.offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)])
        values = [torch.as_tensor(targets[u]).half() for u in self.ids]
        self.values = (
            torch.cat(values) if values else torch.zeros(0, len(self.layers), 0)
        )

    def __len__(self):
        return len(self.ids)

    def __contains__(self, utt_id):
        return utt_id in self.index

    def __getitem__(self, utt_id):
        """Targets of one utterance, float32 ``(frames, layers, width)``."""
        i = self.index[utt_id]
        return self.values[self.offsets[i] : self.offsets[i + 1]].float()

    @classmethod
    def merge(cls, parts):
        """One :class:`FrameTargets` holding the utterances of all ``parts``.

        Example
        -------
        >>> a = FrameTargets({"a": torch.ones(2, 1, 3)}, [4])
        >>> b = FrameTargets({"b": torch.zeros(1, 1, 3)}, [4])
        >>> m = FrameTargets.merge([a, b])
        >>> m.ids, m["b"].shape
        (['a', 'b'], torch.Size([1, 1, 3]))
        """
        if len({tuple(p.layers) for p in parts}) != 1:
            raise ValueError("cannot merge targets of different teacher layers.")
        merged = cls({}, parts[0].layers)
        merged.ids = [utt for p in parts for utt in p.ids]
        if len(set(merged.ids)) != len(merged.ids):
            raise ValueError("the merged targets repeat utterance ids.")
        merged.index = {utt: i for i, utt in enumerate(merged.ids)}
        lengths = torch.cat([p.offsets.diff() for p in parts])
        merged.offsets = torch.cat(
            [torch.zeros(1, dtype=torch.long), lengths.cumsum(0)]
        )
        merged.values = torch.cat([p.values for p in parts])
        return merged

    def moments(self, max_frames=200000, seed=0):
        """Mean and std of every layer and dimension over (a sample of) frames.

        Returns
        -------
        mean, std : torch.Tensor
            Shape ``(layers, width)`` each.
        """
        values = self.values
        if len(values) > max_frames:
            generator = torch.Generator().manual_seed(seed)
            values = values[
                torch.randperm(len(values), generator=generator)[:max_frames]
            ]
        values = values.float()
        return values.mean(0), values.std(0).clamp(min=1e-5)

    def utterance_moments(self, chunk=100000):
        """Mean and std, over utterances, of every utterance's mean frame.

        What the frame moments miss: the part of a target that is constant
        over an utterance (its speaker, channel, recording), whose spread
        over utterances is a small fraction of the frames' spread.

        Returns
        -------
        mean, std : torch.Tensor
            Shape ``(layers, width)`` each.

        Example
        -------
        >>> targets = FrameTargets(
        ...     {"a": torch.zeros(4, 1, 2), "b": torch.full((2, 1, 2), 2.0)}, [1])
        >>> mean, std = targets.utterance_moments()
        >>> mean.tolist(), std.tolist()
        ([[1.0, 1.0]], [[1.0, 1.0]])
        """
        sums = torch.zeros(len(self.ids), *self.values.shape[1:])
        lengths = self.offsets.diff()
        owner = torch.repeat_interleave(torch.arange(len(self.ids)), lengths)
        for start in range(0, len(owner), chunk):
            stop = start + chunk
            sums.index_add_(0, owner[start:stop], self.values[start:stop].float())
        means = sums / lengths.clamp(min=1).view(-1, 1, 1).float()
        return means.mean(0), means.std(0, unbiased=False).clamp(min=1e-5)

    def save(self, path):
        """Write to ``path`` (torch format)."""
        torch.save(
            {
                "ids": self.ids,
                "offsets": self.offsets,
                "values": self.values,
                "layers": self.layers,
            },
            path,
        )

    @classmethod
    def load(cls, path):
        """Read a file written by :meth:`save`."""
        state = torch.load(path, weights_only=True)
        targets = cls({}, state["layers"])
        targets.ids = list(state["ids"])
        targets.index = {utt: i for i, utt in enumerate(targets.ids)}
        targets.offsets = state["offsets"]
        targets.values = state["values"]
        return targets


def wavlm_frames(samples):
    """Frames a WavLM gives for ``samples`` of audio: the targets kept per utterance.

    Example
    -------
    >>> wavlm_frames(16000)
    49
    """
    return int(
        conv_output_lengths(torch.tensor([samples]), WAVLM_KERNELS, WAVLM_STRIDES)
    )


def pack_windows(lengths, window=WINDOW_SAMPLES, hop=HOP):
    """Greedily pack utterances, in order, into windows of ``window`` samples.

    Every utterance starts on a multiple of ``hop`` within its window, so its
    frames are a slice of the window's frames.

    Arguments
    ---------
    lengths : list of int
        Samples of each utterance (each at most ``window``).
    window, hop : int
        Window size and frame hop in samples.

    Returns
    -------
    list of list of (int, int)
        For each window, the (utterance index, start sample) it holds.

    Example
    -------
    >>> pack_windows([500, 700, 900], window=1600, hop=320)
    [[(0, 0), (1, 640)], [(2, 0)]]
    """
    windows, current, used = [], [], 0
    for i, length in enumerate(lengths):
        if length > window:
            raise ValueError(f"utterance {i} ({length} samples) exceeds the window.")
        if used + length > window:
            windows.append(current)
            current, used = [], 0
        current.append((i, used))
        used += -(-length // hop) * hop
    if current:
        windows.append(current)
    return windows


def whisper_hidden_states(encoder, feature_extractor, audio, layers):
    """Selected hidden states of a Whisper encoder for one 30 s window.

    Arguments
    ---------
    encoder : transformers.WhisperEncoder
    feature_extractor : transformers.WhisperFeatureExtractor
    audio : numpy.ndarray
        At most 30 s of 16 kHz audio (padded to 30 s by the extractor).
    layers : list of int or str
        Hidden states to keep (``"log_mel"``: the log-mel input,
        :func:`log_mel_frames`): 0 = the convolution front end's output with
        the sinusoidal positions taken out again (utterances sit anywhere in
        a packed window, so the positions say nothing about them and a
        student could not predict them), the last = the encoder output after
        its final layer norm.

    Returns
    -------
    torch.Tensor
        ``(1500, len(layers), d_model)``.
    """
    features = feature_extractor(
        audio, sampling_rate=16000, return_tensors="pt"
    ).input_features
    param = next(encoder.parameters())
    with torch.no_grad():
        out = encoder(features.to(param.device, param.dtype), output_hidden_states=True)
        states = []
        for layer in layers:
            if layer == LOG_MEL:
                states.append(log_mel_frames(features[0], out.hidden_states[0][0]))
            elif layer == 0:
                positions = encoder.embed_positions.weight[
                    : out.hidden_states[0].shape[1]
                ]
                states.append(out.hidden_states[0][0] - positions)
            else:
                states.append(out.hidden_states[layer][0])
    return torch.stack(states, dim=1).cpu()


def log_mel_frames(features, like):
    """Whisper's log-mel input at the encoder's frame rate, shaped like a hidden state.

    Two 10 ms mel frames are averaged into each 20 ms frame; the bins fill the
    first dimensions and the rest are 0 (after the targets' standardisation
    too, so a head learns to predict 0 there).

    Arguments
    ---------
    features : torch.Tensor
        ``(mel bins, mel frames)``.
    like : torch.Tensor
        A hidden state ``(frames, width)``: the shape, dtype and device to match.

    Returns
    -------
    torch.Tensor
        ``(frames, width)``.

    Example
    -------
    >>> mel = torch.arange(12.0).view(2, 6)  # 2 bins, 6 frames of 10 ms
    >>> log_mel_frames(mel, torch.zeros(3, 4))
    tensor([[ 0.5000,  6.5000,  0.0000,  0.0000],
            [ 2.5000,  8.5000,  0.0000,  0.0000],
            [ 4.5000, 10.5000,  0.0000,  0.0000]])
    """
    frames, width = like.shape
    bins = features.shape[0]
    if bins > width:
        raise ValueError(f"{bins} mel bins do not fit in width {width}.")
    pairs = features[:, : 2 * frames].T.reshape(frames, 2, bins).mean(1)
    out = torch.zeros_like(like)
    out[:, :bins] = pairs.to(like.dtype)
    return out


def compute_whisper_targets(csv_path, encoder, layers, feature_extractor=None):
    """Whisper targets of every utterance of a manifest, WavLM-frame aligned.

    Bad audio files are skipped and logged (the training collate then skips
    those utterances as having no targets).

    Arguments
    ---------
    csv_path : str
        Manifest (``ID``, ``wav``, ``duration``).
    encoder : transformers.WhisperEncoder
    layers : list of int
        Hidden states to keep.
    feature_extractor : transformers.WhisperFeatureExtractor, optional
        Default: Whisper's 80-bin extractor.

    Returns
    -------
    FrameTargets
    """
    from transformers import WhisperFeatureExtractor

    if feature_extractor is None:
        feature_extractor = WhisperFeatureExtractor(
            feature_size=encoder.config.num_mel_bins
        )
    dataset = make_audio_dataset(csv_path, random_crop=False)
    ids, audio = [], []
    skipped = 0
    for i in range(len(dataset)):
        item = dataset[i]
        if isinstance(item["sig"], BadAudioError):
            logger.warning("Skipping %s: %s", item["id"], item["sig"])
            skipped += 1
            continue
        sig = item["sig"].numpy()
        if len(sig) > WINDOW_SAMPLES:
            logger.warning("Skipping %s: longer than Whisper's 30 s window", item["id"])
            skipped += 1
            continue
        ids.append(item["id"])
        audio.append(sig)
    windows = pack_windows([len(a) for a in audio])
    targets = {}
    start = time.time()
    for w, members in enumerate(windows):
        end = max(offset + len(audio[i]) for i, offset in members)
        window = np.zeros(end, dtype=np.float32)
        for i, offset in members:
            window[offset : offset + len(audio[i])] = audio[i]
        states = whisper_hidden_states(encoder, feature_extractor, window, layers)
        for i, offset in members:
            frames = wavlm_frames(len(audio[i]))
            first = offset // HOP
            targets[ids[i]] = states[first : first + frames].half()
        if (w + 1) % 20 == 0:
            logger.info(
                "Whisper targets: %d/%d windows (%.0f s)",
                w + 1,
                len(windows),
                time.time() - start,
            )
    logger.info(
        "Whisper targets of %s: %d utterances in %d windows, %d skipped, %.0f s",
        csv_path,
        len(targets),
        len(windows),
        skipped,
        time.time() - start,
    )
    return FrameTargets(targets, layers)
