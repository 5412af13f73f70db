#!/usr/bin/env python3
"""Linear probes on real speech: spoken words with held-out speakers, and speakers.

Word probe: every folder of ``--word_folders`` is one speaker; each audio
file's name (lower-cased stem) is its word. Only words present in every folder
are kept. The probe is cross-validated leave-one-speaker-out, so it must
recognise a word in a voice it was not fitted on. Speaker probe: the audio
under ``--speaker_folder`` (LibriSpeech naming, e.g. shared/real_audio's
test-other: 10 speakers x 10 utterances), the first ``--speaker_train``
utterances of each speaker fit, the rest score. Both use
:mod:`speechbrain_skill.downstream.probing` (mean-pooled hidden states, ridge
probe, hidden state and L2 chosen by cross-validation on the fitting part).

The data used for docs/tiny_teacher.md (real recordings from Debian packages):

* KLettres (``klettres-data``, GPL-2+): the English alphabet spoken by two
  speakers (``usr/share/klettres/en/alpha``, ``.../en_GB/alpha``);
* Asterisk core sounds (``asterisk-core-sounds-en-wav``, CC BY-SA 3.0): the
  alphabet by Allison Smith (``usr/share/asterisk/sounds/en_US_f_Allison/letters``,
  8 kHz telephone audio).

::

    apt-get download klettres-data asterisk-core-sounds-en-wav
    dpkg -x klettres-data_*.deb words; dpkg -x asterisk-core-sounds-en-wav_*.deb words
    python benchmarks/real_speech_probes.py --output results/real_probes \\
        --word_folders words/usr/share/klettres/en/alpha \\
            words/usr/share/klettres/en_GB/alpha \\
            words/usr/share/asterisk/sounds/en_US_f_Allison/letters \\
        --speaker_folder ../shared/real_audio/librispeech/test-other \\
        --sources builtin:whisper-wavlm random:builtin:whisper-wavlm mfcc
"""

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import soundfile as sf
import torch

from speechbrain_skill.data.audio import read_audio
from speechbrain_skill.data.manifests import (
    AUDIO_SUFFIXES,
    audio_folder_manifest,
    read_manifest,
    write_manifest,
)
from speechbrain_skill.downstream.probing import run_probes

AUDIO = tuple(AUDIO_SUFFIXES) + (".ogg",)


def trim_silence(wav, threshold_db=-35.0, frame=320):
    """Cut leading and trailing 20 ms frames quieter than ``threshold_db`` re. the peak.

    Example
    -------
    >>> wav = torch.cat([torch.zeros(3200), torch.ones(640), torch.zeros(3200)])
    >>> trim_silence(wav).numel()
    640
    """
    frames = wav[: len(wav) // frame * frame].view(-1, frame)
    rms = frames.pow(2).mean(1).sqrt()
    loud = torch.nonzero(rms > rms.max() * 10 ** (threshold_db / 20)).flatten()
    if len(loud) == 0:
        return wav
    return wav[int(loud[0]) * frame : (int(loud[-1]) + 1) * frame]


def prepare_word_audio(path, out_path, band_hz):
    """16 kHz, band-limited to ``band_hz`` (one channel for all sources), trimmed."""
    import torchaudio.functional as AF

    wav = read_audio(str(path))
    if band_hz:
        wav = AF.resample(AF.resample(wav, 16000, 2 * band_hz), 2 * band_hz, 16000)
    wav = trim_silence(wav)
    sf.write(str(out_path), wav.numpy(), 16000)
    return len(wav) / 16000


def word_manifest(folders, csv_path, band_hz=4000):
    """One row per audio file: the word is its stem, the speaker its folder.

    Every clip is resampled to 16 kHz, band-limited to ``band_hz`` (the
    Asterisk recordings are 8 kHz telephone audio, so all sources get the
    same band) and trimmed of leading and trailing silence, so that
    mean-pooling averages speech rather than silence.
    """
    per_folder = []
    for folder in folders:
        files = {
            p.stem.lower(): p
            for p in sorted(Path(folder).iterdir())
            if p.suffix.lower() in AUDIO
        }
        if not files:
            raise ValueError(f"no audio files in {folder}")
        per_folder.append(files)
    common = sorted(set.intersection(*(set(f) for f in per_folder)))
    audio_dir = Path(csv_path).parent / "words"
    audio_dir.mkdir(exist_ok=True)
    rows = []
    for speaker, files in enumerate(per_folder):
        for word in common:
            utt = f"s{speaker}_{word}"
            wav = audio_dir / f"{utt}.wav"
            duration = prepare_word_audio(files[word], wav, band_hz)
            rows.append([utt, f"{duration:.4f}", str(wav), f"s{speaker}", word])
    write_manifest(csv_path, ["ID", "duration", "wav", "spk_id", "wrd"], rows)
    return len(common), len(rows)


def speaker_split(folder, train_csv, test_csv, per_speaker, fit_last=False):
    """The first (``fit_last``: last) ``per_speaker`` utterances of each speaker fit.

    The rest score; with the default 5 of 10 per speaker, the two splits are
    the two folds of a 2-fold cross-validation.
    """
    all_csv = Path(train_csv).with_name("speakers_all.csv")
    audio_folder_manifest(folder, all_csv)
    rows = sorted(read_manifest(all_csv), key=lambda r: r["ID"], reverse=fit_last)
    header = ["ID", "duration", "wav", "spk_id"]
    seen, train, test = {}, [], []
    for row in rows:
        index = seen.get(row["spk_id"], 0)
        seen[row["spk_id"]] = index + 1
        (train if index < per_speaker else test).append([row[h] for h in header])
    write_manifest(train_csv, header, train)
    write_manifest(test_csv, header, test)
    return len(seen), len(train), len(test)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sources", nargs="+", required=True)
    parser.add_argument("--word_folders", nargs="+", help="one folder per speaker")
    parser.add_argument("--speaker_folder", help="LibriSpeech-named audio")
    parser.add_argument("--speaker_train", type=int, default=5)
    parser.add_argument(
        "--speaker_fit_last",
        action="store_true",
        help="fit on each speaker's last --speaker_train utterances (the other fold)",
    )
    parser.add_argument(
        "--band_hz", type=int, default=4000, help="word clips: band limit (0: none)"
    )
    parser.add_argument("--output", required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s - %(message)s")
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=out))
    data = {}
    words_csv = spk_train = spk_test = None
    if args.word_folders:
        words_csv = work / "words.csv"
        data["words"], data["word_utterances"] = word_manifest(
            args.word_folders, words_csv, args.band_hz
        )
        data["word_speakers"] = len(args.word_folders)
    if args.speaker_folder:
        spk_train, spk_test = work / "spk_train.csv", work / "spk_test.csv"
        data["speakers"], data["spk_train"], data["spk_test"] = speaker_split(
            args.speaker_folder,
            spk_train,
            spk_test,
            args.speaker_train,
            args.speaker_fit_last,
        )
    start = time.time()
    results = run_probes(
        args.sources,
        speaker_train=spk_train and str(spk_train),
        speaker_test=spk_test and str(spk_test),
        words=words_csv and str(words_csv),
        seed=args.seed,
    )
    report = dict(
        data=data,
        word_folders=args.word_folders,
        speaker_folder=args.speaker_folder,
        results=results.results,
        settings=results.settings,
        seconds=round(time.time() - start, 1),
        command=" ".join(sys.argv),
    )
    (out / "probes.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "probes.md").write_text(results.table() + "\n")
    print(results.table())
    print(json.dumps(data))


if __name__ == "__main__":
    main()
