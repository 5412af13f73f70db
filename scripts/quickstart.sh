#!/usr/bin/env bash
# The quick start: build the built-in corpus and run the SKILL recipe on it with the
# shipped WavLM teacher distilled from Whisper (builtin:whisper-wavlm), on CPU, in a few
# minutes. Usage:
#   bash scripts/quickstart.sh [OUTPUT_DIR] [train.py options...]
# Any setting below can be overridden (--num_groups=3 or --num_groups 3); other
# options go to train.py as given. YAML picks another recipe yaml. THREADS sets the
# CPU threads of torch (default: OMP_NUM_THREADS if set, else half the cores, at
# least 1: on a busy machine more threads than free cores make every step many times
# slower).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PY:-$ROOT/.venv/bin/python}"
OUT="$ROOT/results/quickstart"
if (($#)) && [[ "$1" != --* ]]; then
    OUT="$1"
    shift
fi
OUT="$(realpath -m "$OUT")"
CORPUS="$ROOT/data/builtin"
CORES="$(nproc 2>/dev/null || echo 1)"
THREADS="${THREADS:-${OMP_NUM_THREADS:-$((CORES > 1 ? CORES / 2 : 1))}}"
export OMP_NUM_THREADS="$THREADS" MKL_NUM_THREADS="$THREADS"

KEYS=(data_folder output_folder teacher_source device train_splits dev_splits
    num_groups calibration_utterances min_duration max_crop_seconds max_batch_seconds
    num_buckets num_workers valid_max_utterances prune_steps prune_warmup_steps
    sparsity_warmup_steps reg_lr prune_lr final_steps final_warmup_steps final_lr
    log_interval ckpt_interval_minutes ckpt_interval_steps)
declare -A VALUE=(
    [data_folder]="$CORPUS"
    [output_folder]="$OUT"
    [teacher_source]="${TEACHER:-builtin:whisper-wavlm}"
    [device]=cpu
    [train_splits]='["train-clean-100"]'
    [dev_splits]='["dev-clean"]'
    [num_groups]=4
    [calibration_utterances]=64
    [min_duration]=1.0
    [max_crop_seconds]=4.0
    [max_batch_seconds]=16.0
    [num_buckets]=4
    [num_workers]=0
    [valid_max_utterances]=24
    [prune_steps]="${PRUNE_STEPS:-500}"
    [prune_warmup_steps]=30
    [sparsity_warmup_steps]="${SPARSITY_WARMUP:-260}"
    [reg_lr]="${REG_LR:-0.05}"
    [prune_lr]=0.0005
    [final_steps]="${FINAL_STEPS:-100}"
    [final_warmup_steps]=10
    [final_lr]=0.0005
    [log_interval]=10
    [ckpt_interval_minutes]=0
    [ckpt_interval_steps]=50
)
# The user's options replace the settings above; the others pass through.
EXTRA=()
while (($#)); do
    arg="$1"
    shift
    key="${arg#--}"
    key="${key%%=*}"
    if [[ "$arg" == --* && -v "VALUE[$key]" ]]; then
        if [[ "$arg" == *=* ]]; then
            VALUE[$key]="${arg#*=}"
        elif (($#)); then
            VALUE[$key]="$1"
            shift
        else
            echo "quickstart.sh: $arg needs a value" >&2
            exit 2
        fi
    else
        EXTRA+=("$arg")
    fi
done
ARGS=()
for key in "${KEYS[@]}"; do
    ARGS+=("--$key=${VALUE[$key]}")
done

# A misspelt option stops here, in one line, before the corpus is built.
HPARAMS="$ROOT/recipes/LibriSpeech/distillation/hparams/${YAML:-skill_wavlm.yaml}"
SKILL_SCRIPT=quickstart.sh "$PY" -m speechbrain_skill.training.command_line \
    "$HPARAMS" "${ARGS[@]}" ${EXTRA[@]+"${EXTRA[@]}"} || exit $?

if [[ "${VALUE[data_folder]}" == "$CORPUS" ]]; then
    "$PY" -m speechbrain_skill.data.synthetic_corpus --output "$CORPUS" \
        --num_speakers 8 --train_utterances 24 --dev_utterances 3 --test_utterances 3
fi
echo "quickstart: CPU threads $THREADS (THREADS=N to change), output in ${VALUE[output_folder]}"

cd "$ROOT/recipes/LibriSpeech/distillation"
"$PY" train.py "$HPARAMS" "${ARGS[@]}" ${EXTRA[@]+"${EXTRA[@]}"}
