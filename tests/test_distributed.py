"""torchrun data parallelism: two processes follow one process's loss curve and end at its weights
(within float rounding), resume under torchrun is exact, and a world size that does not divide the
batch is refused with one sentence."""

import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from difflab import checkpoint

pytest.importorskip("torch.distributed")
if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():  # pragma: no cover
    pytest.skip("this PyTorch build has no gloo backend", allow_module_level=True)

TINY = """
preset: 8gaussians
model: {hidden: 32, depth: 2, time_dim: 16}
diffusion: {T: 100}
train: {steps: 20, batch_size: 64, log_every: 1, save_every: 10, sample_every: 0, num_samples: 16, keep: 3}
sample: {steps: 5}
data: {num: 2000}
"""
RTOL = 1e-4


def _env():
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env["OMP_NUM_THREADS"] = "1"
    return env


def _torchrun(nproc, *args):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--standalone",
           "-m", "difflab", "train", *map(str, args), "--no-progress", "--device", "cpu"]
    return subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=240)


def _single(*args):
    cmd = [sys.executable, "-m", "difflab", "train", *map(str, args), "--no-progress", "--device", "cpu"]
    return subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=240)


def _losses(run):
    rows = (run / "log.csv").read_text().splitlines()[1:]
    return torch.tensor([[float(x) for x in r.split(",")[:2]] for r in rows], dtype=torch.float64)


def _weights(run, name):
    return load_file(str(checkpoint.list_checkpoints(run)[-1] / f"{name}.safetensors"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    cfg = root / "tiny.yaml"
    cfg.write_text(TINY)
    two = _torchrun(2, cfg, "--out", root / "two")
    assert two.returncode == 0, two.stderr[-3000:]
    one = _single(cfg, "--out", root / "one")
    assert one.returncode == 0, one.stderr[-3000:]
    return cfg, root, two


def test_two_processes_follow_one(runs):
    cfg, root, two = runs
    assert "2 processes" in two.stdout and two.stdout.count("trained ") == 1  # rank 0 alone reports
    a, b = _losses(root / "two"), _losses(root / "one")
    assert a.shape == (20, 2) and torch.equal(a[:, 0], b[:, 0])
    torch.testing.assert_close(a[:, 1], b[:, 1], rtol=RTOL, atol=0)
    for name in ("model", "ema"):
        wa, wb = _weights(root / "two", name), _weights(root / "one", name)
        assert wa.keys() == wb.keys()
        for k in wa:
            torch.testing.assert_close(wa[k], wb[k], rtol=RTOL, atol=RTOL * float(wb[k].abs().max()), msg=f"{name}.{k}")
    state = checkpoint.verify(checkpoint.list_checkpoints(root / "two")[-1])
    assert state["world_size"] == 2 and state["step"] == 20
    # rank 0 alone wrote: one sample grid, no temporary files
    assert [p.name for p in (root / "two" / "samples").iterdir()] == ["step_00000020.png"]
    assert not [p for p in (root / "two").iterdir() if p.name.startswith(".")]


def test_resume_under_torchrun_is_exact(runs):
    cfg, root, _ = runs
    out = root / "resumed"
    first = _torchrun(2, cfg, "--out", out, "--steps", 10)
    assert first.returncode == 0, first.stderr[-3000:]
    second = _torchrun(2, cfg, "--out", out, "--resume", "--steps", 20)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resuming" in second.stdout and "from step 10" in second.stdout
    for name in ("model", "ema"):  # the same float operations in the same order: bit for bit
        wa, wb = _weights(root / "two", name), _weights(out, name)
        assert all(torch.equal(wa[k], wb[k]) for k in wa), name
    assert torch.equal(_losses(out), _losses(root / "two"))


def test_world_size_must_divide_the_batch(runs, tmp_path):
    cfg = tmp_path / "odd.yaml"
    cfg.write_text(TINY.replace("batch_size: 64", "batch_size: 63"))
    proc = _torchrun(2, cfg, "--out", tmp_path / "run")
    assert proc.returncode != 0
    msg = "train.batch_size = 63 cannot be split over 2 processes"
    assert proc.stderr.count(msg) == 1, proc.stderr[-3000:]  # one sentence, from rank 0
    assert not (tmp_path / "run").exists()


LSM = """
preset: digits
model: {base_channels: 8, channel_mult: [1, 2], num_res_blocks: 1, attention_resolutions: [], groups: 8, num_classes: 10}
diffusion: {T: 20, loss: vlb, learned_variance: true}
train: {steps: 20, batch_size: 32, log_every: 1, save_every: 0, sample_every: 0, num_samples: 4, timestep_sampler: loss-second-moment}
sample: {steps: 5}
data: {num: 96}
"""


def test_two_processes_keep_one_timestep_sampler_state(tmp_path):
    """L_vlb with loss-second-moment sampling (Nichol & Dhariwal 2021, Sec. 3.3): each rank computes half the
    batch, but every rank feeds the sampler the whole batch's losses, so rank 0 records what one process
    records and both ranks draw the same t once the sampler is warmed up (T = 20: by about step 10), and the
    run follows the one-process run. Up to float rounding: Adam turns the rounding noise of a bias whose
    gradient is ~0 (one followed by a GroupNorm) into steps of about the learning rate, hence the atol."""
    cfg = tmp_path / "lsm.yaml"
    cfg.write_text(LSM)
    two = _torchrun(2, cfg, "--out", tmp_path / "two")
    assert two.returncode == 0, two.stderr[-3000:]
    one = _single(cfg, "--out", tmp_path / "one")
    assert one.returncode == 0, one.stderr[-3000:]
    a, b = _weights(tmp_path / "two", "trainer"), _weights(tmp_path / "one", "trainer")
    assert b["sampler.loss_counts"].tolist() == [10] * 20  # warmed up: the later draws are not uniform
    assert torch.equal(a["sampler.loss_counts"], b["sampler.loss_counts"])
    torch.testing.assert_close(a["sampler.loss_history"], b["sampler.loss_history"], rtol=1e-5, atol=0)
    wa, wb = _weights(tmp_path / "two", "model"), _weights(tmp_path / "one", "model")
    for k in wb:
        torch.testing.assert_close(wa[k], wb[k], rtol=RTOL, atol=1e-5, msg=k)
    la, lb = _losses(tmp_path / "two"), _losses(tmp_path / "one")
    assert torch.equal(la[:, 0], lb[:, 0])
    torch.testing.assert_close(la[:, 1], lb[:, 1], rtol=RTOL, atol=0)


LONG = TINY.replace("steps: 20,", "steps: 300,").replace("save_every: 10,", "save_every: 30,").replace("log_every: 1,", "log_every: 10,")


def _workers(pid: int) -> dict[int, int]:
    """{rank: pid} of the worker processes torchrun ``pid`` started (read from /proc)."""
    from pathlib import Path

    out = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) != pid:
                continue
            env = dict(kv.split(b"=", 1) for kv in (d / "environ").read_bytes().split(b"\0") if b"=" in kv)
        except (OSError, ValueError, IndexError):
            continue
        if b"RANK" in env:
            out[int(env[b"RANK"])] = int(d.name)
    return out


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="finds the workers in /proc")
def test_when_one_rank_dies_the_other_stops_and_resume_finishes_bit_for_bit(tmp_path):
    """kill -9 one worker of a two-process run: the other stops at once (its all-reduce fails) with one sentence
    naming what it keeps, torchrun names the rank that died, and --resume under torchrun ends where an
    uninterrupted run does."""
    import signal
    import time

    cfg = tmp_path / "long.yaml"
    cfg.write_text(LONG)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone", "-m", "difflab",
           "train", str(cfg), "--out", str(out), "--no-progress", "--device", "cpu"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    deadline = time.monotonic() + 120
    while len(checkpoint.list_checkpoints(out)) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    workers = _workers(proc.pid)
    assert proc.poll() is None and sorted(workers) == [0, 1], proc.communicate()
    os.kill(workers[1], signal.SIGKILL)
    killed = time.monotonic()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0 and time.monotonic() - killed < 60
    assert "rank      : 1" in err and "SIGKILL" in err  # torchrun names the rank that died
    # Rank 0 stops by whichever comes first: its all-reduce failing (PeerLost) or torchrun's SIGTERM to the
    # survivors once it sees rank 1 die. Either way it prints one sentence naming the checkpoint it keeps.
    lines = [ln for ln in err.splitlines()
             if "difflab train: error: process 0 of 2 lost another process of the run" in ln
             or "difflab train: terminated (SIGTERM)" in ln]
    assert len(lines) == 1, err[-3000:]
    assert "keeps its checkpoint ckpt-" in lines[0] and "continue with --resume" in lines[0]
    assert not [ln for ln in err.splitlines() if ln.startswith("[rank") and "Traceback" in ln]  # no worker traceback
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
    resumed = _torchrun(2, cfg, "--out", out, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    straight = _torchrun(2, cfg, "--out", tmp_path / "straight")
    assert straight.returncode == 0, straight.stderr[-3000:]
    for name in ("model", "ema"):
        wa, wb = _weights(tmp_path / "straight", name), _weights(out, name)
        assert all(torch.equal(wa[k], wb[k]) for k in wa), name
