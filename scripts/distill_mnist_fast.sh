#!/bin/bash
# mnist-fast: the shipped mnist model (class-conditional) progressively distilled from 64 DDIM steps down to 2, five
# rounds of 500 steps, on this CPU in resumable pieces: each call trains MINUTES more (default 60) and stops at a
# checkpoint; the same command continues it. Run it alone (two PyTorch processes on 2 cores slow each other tenfold).
#   bash scripts/distill_mnist_fast.sh 60
# When it reports round-2 distilled, export it (see src/difflab/weights/mnist-fast/TRAINING.md).
set -euo pipefail
MINUTES=${1:-60}
exec difflab distill mnist --to 2 --from 64 --steps 500 --out runs/pretrained/mnist-fast --resume --max-minutes "$MINUTES"
