"""Reproduction `ddim-eta` (see `difflab.reproduce.ddim_eta`): trains or reuses its models, measures, and writes
docs/results/ddim-eta.md and .png. The same as `difflab reproduce ddim-eta`; takes --out, --runs, --quick."""

import sys

from difflab.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["reproduce", "ddim-eta", *sys.argv[1:]]))
