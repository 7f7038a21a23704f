"""Reproduction `objectives` (see `difflab.reproduce.objectives`): trains or reuses its models, measures, and writes
docs/results/objectives.md and .png. The same as `difflab reproduce objectives`; takes --out, --runs, --quick."""

import sys

from difflab.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["reproduce", "objectives", *sys.argv[1:]]))
