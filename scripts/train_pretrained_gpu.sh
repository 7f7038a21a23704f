#!/bin/bash
# Train the shipped mnist and fashion-mnist models side by side on one GPU, then export them.
# Data: IDX files under .gpu/mnist and .gpu/fashion-mnist (scripts/export_mnist_idx.py writes the MNIST ones;
# Fashion-MNIST is the Debian package dataset-fashion-mnist). Run from the repository root with OUT set.
export PYTHONPATH=src PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.is_available())"
STEPS=${STEPS:-20000}
MIN=${MIN:-8}
for name in mnist fashion-mnist; do
  (time python3 -m difflab train scripts/pretrained_$name.yaml --out /tmp/runs/$name --device cuda --steps $STEPS --no-progress --max-minutes $MIN) > /tmp/runs-$name.log 2>&1 &
done
wait
for name in mnist fashion-mnist; do
  tail -3 /tmp/runs-$name.log
  python3 -m difflab export /tmp/runs/$name --out $OUT/$name --notes "preset $name, trained on one H100 (see TRAINING.md)"
  cp /tmp/runs-$name.log /tmp/runs/$name/stdout.log
done
tar -C /tmp/runs -cf $OUT/extras.tar --exclude='ckpt-*' --exclude='events.*' mnist fashion-mnist
ls -la $OUT $OUT/*
