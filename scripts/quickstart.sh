#!/usr/bin/env bash
# The quick start: build the built-in corpus and run the SKILL recipe on it with the
# shipped tiny WavLM teacher, on CPU, in a few minutes. Usage:
#   bash scripts/quickstart.sh [OUTPUT_DIR] [extra train.py overrides...]
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PY:-$ROOT/.venv/bin/python}"
OUT="$(realpath -m "${1:-$ROOT/results/quickstart}")"
shift || true
CORPUS="$ROOT/data/builtin"

"$PY" -m speechbrain_skill.data.synthetic_corpus --output "$CORPUS" \
    --num_speakers 8 --train_utterances 24 --dev_utterances 3 --test_utterances 3

cd "$ROOT/recipes/LibriSpeech/distillation"
"$PY" train.py "hparams/${YAML:-skill_wavlm.yaml}" \
    --data_folder="$CORPUS" \
    --output_folder="$OUT" \
    --teacher_source="${TEACHER:-builtin:tiny-wavlm}" \
    --device=cpu \
    --train_splits='["train-clean-100"]' \
    --dev_splits='["dev-clean"]' \
    --num_groups=4 \
    --calibration_utterances=64 \
    --min_duration=1.0 \
    --max_crop_seconds=4.0 \
    --max_batch_seconds=16.0 \
    --num_buckets=4 \
    --num_workers=0 \
    --valid_max_utterances=24 \
    --prune_steps="${PRUNE_STEPS:-500}" \
    --prune_warmup_steps=30 \
    --sparsity_warmup_steps="${SPARSITY_WARMUP:-200}" \
    --reg_lr="${REG_LR:-0.05}" \
    --prune_lr=0.0005 \
    --final_steps="${FINAL_STEPS:-100}" \
    --final_warmup_steps=10 \
    --final_lr=0.0005 \
    --log_interval=10 \
    --ckpt_interval_minutes=0 \
    --ckpt_interval_steps=50 \
    "$@"
