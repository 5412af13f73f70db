#!/usr/bin/env bash
# Distil three students from a shipped teacher on the built-in corpus (SKILL,
# DPHuBERT, DistilHuBERT), then train the same downstream heads (keyword spotting,
# speaker ID) on the teacher, each student and a random floor, and write one table.
#   bash scripts/compare_students.sh [OUTPUT_DIR]
# TEACHER=builtin:tiny-wavlm selects the earlier teacher (default: the quick start's);
# any teacher with a preset in hparams/teachers/ (its source) can be named.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PY:-$ROOT/.venv/bin/python}"
OUT="$(realpath -m "${1:-$ROOT/results/compare_students}")"
TEACHER="${TEACHER:-builtin:whisper-wavlm}"
export PY TEACHER
# Each method's fixed targets for this teacher: from its preset in hparams/teachers/.
TARGETS="$("$PY" - "$TEACHER" "$ROOT/hparams/teachers" <<'EOF'
import json
import sys
from pathlib import Path

from hyperpyyaml import load_hyperpyyaml

teacher, folder = sys.argv[1:]
for path in sorted(Path(folder).glob("*.yaml")):
    preset = load_hyperpyyaml(path.read_text())
    if preset["source"] == teacher:
        dphubert = preset["dphubert_groups"]
        distilhubert = [[layer] for layer in preset["distilhubert_layers"]]
        print(*(json.dumps(g, separators=(",", ":")) for g in (dphubert, distilhubert)))
        sys.exit(0)
sys.exit(f"compare_students.sh: no preset in {folder} has source {teacher}")
EOF
)" || exit 2
read -r DPHUBERT DISTILHUBERT <<<"$TARGETS"

bash "$ROOT/scripts/quickstart.sh" "$OUT/skill" --noprogressbar
YAML=dphubert_wavlm.yaml bash "$ROOT/scripts/quickstart.sh" "$OUT/dphubert" \
    --noprogressbar "--groups=$DPHUBERT"
(
    cd "$ROOT/recipes/LibriSpeech/distillation"
    "$PY" train.py hparams/distilhubert_wavlm.yaml --data_folder="$ROOT/data/builtin" \
        --output_folder="$OUT/distilhubert" --teacher_source="$TEACHER" \
        --device=cpu --noprogressbar '--train_splits=["train-clean-100"]' \
        '--dev_splits=["dev-clean"]' "--groups=$DISTILHUBERT" --min_duration=1.0 \
        --max_crop_seconds=4.0 --max_batch_seconds=16.0 --num_buckets=4 --num_workers=0 \
        --valid_max_utterances=24 --final_steps=600 --final_warmup_steps=30 \
        --final_lr=0.0005 --log_interval=10 --ckpt_interval_minutes=0 --ckpt_interval_steps=100
)

KWS_CORPUS="$ROOT/data/builtin_keywords"
"$PY" -m speechbrain_skill.data.synthetic_corpus --output "$KWS_CORPUS" \
    --num_speakers 8 --train_utterances 12 --dev_utterances 3 --test_utterances 3 \
    --keywords_per_speaker 20
"$PY" -m speechbrain_skill.downstream.compare --quick --in_process --tasks kws sid \
    --data_folder "$KWS_CORPUS" --output "$OUT/downstream" \
    --upstream teacher="$TEACHER" \
    --upstream skill="$OUT/skill/student" \
    --upstream dphubert="$OUT/dphubert/student" \
    --upstream distilhubert="$OUT/distilhubert/student" \
    --upstream floor=random:"$OUT/skill/student"
