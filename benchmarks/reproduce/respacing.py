"""Reproduction `respacing` (see `difflab.reproduce.respacing`): trains or reuses its models, measures, and writes
docs/results/respacing.md and .png. The same as `difflab reproduce respacing`; takes --out, --runs, --quick."""

import sys

from difflab.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["reproduce", "respacing", *sys.argv[1:]]))
