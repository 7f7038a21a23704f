"""Reproduction `schedules` (see `difflab.reproduce.schedules`): trains or reuses its models, measures, and writes
docs/results/schedules.md and .png. The same as `difflab reproduce schedules`; takes --out, --runs, --quick."""

import sys

from difflab.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["reproduce", "schedules", *sys.argv[1:]]))
