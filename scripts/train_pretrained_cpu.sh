#!/bin/bash
# Train a shipped model on this CPU in resumable pieces: each call trains MINUTES more (default 60) and stops at a
# checkpoint; the same command continues it. Run it alone (two PyTorch processes on 2 cores slow each other tenfold).
#   bash scripts/train_pretrained_cpu.sh mnist 60
# When `difflab train` reports the run complete, choose the EMA length and export (see the model's TRAINING.md).
set -euo pipefail
NAME=${1:?name of scripts/pretrained_NAME_cpu.yaml}
MINUTES=${2:-60}
RUN=runs/pretrained/$NAME
RESUME=()
[ -e "$RUN/config.json" ] && RESUME=(--resume)
exec difflab train "scripts/pretrained_${NAME}_cpu.yaml" --out "$RUN" --max-minutes "$MINUTES" "${RESUME[@]}"
