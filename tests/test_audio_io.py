import csv

import numpy as np
import pytest
import soundfile as sf
import torch

from speechbrain_skill.data.audio import BadAudioError, crop, read_audio
from speechbrain_skill.data.dataio import (
    SkipBadAudioCollate,
    SkippedBatch,
    make_audio_dataloader,
    make_audio_dataset,
    make_dynamic_batch_sampler,
)


def _tone(seconds, rate, freq=440.0, channels=1):
    t = np.arange(int(seconds * rate)) / rate
    mono = 0.5 * np.sin(2 * np.pi * freq * t).astype("float32")
    return np.stack([mono * (c + 1) / channels for c in range(channels)], axis=1)


@pytest.fixture
def bad_files(tmp_path):
    files = {}
    files["corrupt"] = tmp_path / "corrupt.flac"
    files["corrupt"].write_bytes(b"RIFF....garbage" * 10)
    files["empty"] = tmp_path / "empty.wav"
    sf.write(str(files["empty"]), np.zeros((0, 1), dtype="float32"), 16000)
    files["short"] = tmp_path / "short.flac"
    sf.write(str(files["short"]), _tone(0.01, 16000), 16000)
    files["nan"] = tmp_path / "nan.wav"
    data = _tone(1.0, 16000)
    data[100] = np.nan
    sf.write(str(files["nan"]), data, 16000, subtype="FLOAT")
    files["missing"] = tmp_path / "missing.flac"
    return files


@pytest.mark.parametrize(
    "kind, reason",
    [
        ("corrupt", "unreadable"),
        ("empty", "empty"),
        ("short", "too short"),
        ("nan", "NaN or Inf"),
        ("missing", "missing"),
    ],
)
def test_bad_inputs_raise_a_named_reason(bad_files, kind, reason):
    with pytest.raises(BadAudioError) as info:
        read_audio(str(bad_files[kind]))
    assert info.value.reason.startswith(reason)


def test_8khz_is_resampled_keeping_the_tone(tmp_path):
    path = tmp_path / "tone8k.wav"
    sf.write(str(path), _tone(1.0, 8000, freq=440.0), 8000)
    audio = read_audio(str(path)).numpy()
    assert audio.shape == (16000,)
    spectrum = np.abs(np.fft.rfft(audio))
    assert np.argmax(spectrum) == pytest.approx(440, abs=1)  # 1 Hz bins at 1 s


def test_stereo_is_downmixed_to_the_channel_mean(tmp_path):
    path = tmp_path / "stereo.wav"
    data = _tone(0.5, 16000, channels=2)
    sf.write(str(path), data, 16000, subtype="FLOAT")
    audio = read_audio(str(path)).numpy()
    np.testing.assert_allclose(audio, data.mean(axis=1), atol=1e-6)


def test_crop_random_offsets_are_contiguous_windows():
    audio = torch.arange(100.0)
    generator = torch.Generator().manual_seed(0)
    starts = set()
    for _ in range(20):
        out = crop(audio, 10, generator=generator)
        assert out.numel() == 10 and torch.equal(out, torch.arange(out[0], out[0] + 10))
        starts.add(int(out[0]))
    assert len(starts) > 1
    assert torch.equal(crop(audio, 200), audio)


def _manifest(tmp_path, files):
    path = tmp_path / "manifest.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["ID", "duration", "wav", "spk_id", "wrd"])
        for i, wav in enumerate(files):
            writer.writerow([f"utt{i}", 1.0, str(wav), "1", "A"])
    return path


def test_loader_skips_and_counts_bad_files(tmp_path, bad_files):
    good = []
    for i in range(3):
        good.append(tmp_path / f"good{i}.flac")
        sf.write(str(good[-1]), _tone(1.0, 16000), 16000)
    files = [good[0], *bad_files.values(), good[1], good[2]]
    loader = make_audio_dataloader(_manifest(tmp_path, files), batch_size=2)
    seen = [utt for batch in loader for utt in batch.id]
    assert sorted(seen) == ["utt0", "utt6", "utt7"]
    assert loader.num_skipped == 5
    prefixes = sorted(reason.split(" (")[0] for reason in loader.skipped)
    assert prefixes == [
        "NaN or Inf samples",
        "empty",
        "missing",
        "too short",
        "unreadable",
    ]


def test_all_bad_batch_is_empty_not_an_error():
    batch = SkipBadAudioCollate()([{"id": "x", "sig": BadAudioError("x", "missing")}])
    assert isinstance(batch, SkippedBatch) and len(batch) == 0
    assert batch.to("cpu") is batch and batch.skipped == [("x", "missing")]


def test_dynamic_batches_respect_the_seconds_budget(manifests):
    dataset = make_audio_dataset(
        str(manifests / "train-clean-100.csv"), max_crop_seconds=2.0
    )
    sampler = make_dynamic_batch_sampler(
        dataset, max_batch_seconds=6.0, num_buckets=2, max_crop_seconds=2.0
    )
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(len(dataset)))
    for indices in batches:
        assert len(indices) * 2.0 <= 6.0 + 1e-6
    loader = torch.utils.data.DataLoader(
        dataset, batch_sampler=sampler, collate_fn=SkipBadAudioCollate()
    )
    batch = next(iter(loader))
    wavs, lens = batch.sig
    assert wavs.shape[1] <= 32000 and lens.max() == 1.0
