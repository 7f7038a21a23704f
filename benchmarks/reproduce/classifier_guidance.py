"""Reproduction `classifier-guidance` (see `difflab.reproduce.classifier_guidance`): trains or reuses its models, measures, and writes
docs/results/classifier-guidance.md and .png. The same as `difflab reproduce classifier-guidance`; takes --out, --runs, --quick."""

import sys

from difflab.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["reproduce", "classifier-guidance", *sys.argv[1:]]))
