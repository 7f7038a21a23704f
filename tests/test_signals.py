"""Ctrl-C and SIGTERM: a long command stops, says what it kept, and leaves nothing half-written."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from difflab import checkpoint
from difflab.cli.main import main

TOY = """preset: 8gaussians
model: {hidden: 16, depth: 2, time_dim: 8}
diffusion: {T: 50}
train: {steps: 100000, batch_size: 32, log_every: 10, save_every: 25, sample_every: 0, num_samples: 16}
sample: {steps: 4}
data: {num: 256}
"""


def _start(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "difflab", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)


def _terminate(proc: subprocess.Popen, when) -> tuple[int, str]:
    deadline = time.monotonic() + 60
    while not when() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    return proc.returncode, err


def _leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob("*") if p.name.startswith(".") or ".tmp" in p.name]


def test_sigterm_while_sampling_leaves_no_file(tmp_path):
    (tmp_path / "toy.yaml").write_text(TOY)
    assert main(["train", str(tmp_path / "toy.yaml"), "--out", str(tmp_path / "run"), "--steps", "2", "--no-progress"]) == 0
    out = tmp_path / "samples"
    out.mkdir()
    proc = _start(["sample", str(tmp_path / "run"), "--num", "5000000", "--batch-size", "2000", "--no-progress",
                   "--out", str(out / "s.npz")])
    code, err = _terminate(proc, lambda: list(out.iterdir()))  # the temporary file of the stream exists
    assert code == 143, err
    assert err.strip().splitlines()[-1] == "difflab sample: terminated (SIGTERM); no output was left half-written."
    assert list(out.iterdir()) == []


def test_sigterm_while_training_keeps_the_last_checkpoint_and_resumes(tmp_path):
    (tmp_path / "toy.yaml").write_text(TOY)
    run = tmp_path / "run"
    proc = _start(["train", str(tmp_path / "toy.yaml"), "--out", str(run), "--no-progress"])
    code, err = _terminate(proc, lambda: len(checkpoint.list_checkpoints(run)) >= 2)
    assert code == 143, err
    kept = checkpoint.list_checkpoints(run)[-1]
    assert err.strip().splitlines()[-1] == (f"difflab train: terminated (SIGTERM); {run} keeps its checkpoint "
                                            f"{kept.name}; continue with --resume.")
    assert _leftovers(run) == []
    checkpoint.verify(kept)
    step = int(kept.name.split("-")[1])
    assert main(["train", str(tmp_path / "toy.yaml"), "--out", str(run), "--resume", "--steps", str(step + 5),
                 "--no-progress"]) == 0
    assert checkpoint.list_checkpoints(run)[-1].name == f"ckpt-{step + 5:08d}"
