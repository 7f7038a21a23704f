"""Reproduction `swiss-roll` (see `difflab.reproduce.swiss_roll`): trains or reuses its models, measures, and writes
docs/results/swiss-roll.md and .png. The same as `difflab reproduce swiss-roll`; takes --out, --runs, --quick."""

import sys

from difflab.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["reproduce", "swiss-roll", *sys.argv[1:]]))
