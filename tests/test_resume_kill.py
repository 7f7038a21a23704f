"""Runs that are killed or stopped, and resumed: SIGKILL at random moments (many inside a checkpoint
write) and ``--resume`` until done ends bit for bit where an uninterrupted run ends; ``--max-minutes``
stops with a checkpoint; the long-run flags are recorded; resuming the wrong thing is refused."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from difflab.cli.main import main
from difflab.config import resolve
from difflab.errors import DifflabError
from difflab import checkpoint
from difflab.training.diffusion import train

TINY = """
preset: 8gaussians
model: {hidden: 32, depth: 2, time_dim: 16}
diffusion: {T: 100}
train: {steps: 30, batch_size: 64, log_every: 10, save_every: 10, sample_every: 0, num_samples: 16, keep: 2}
sample: {steps: 5}
data: {num: 2000}
"""
FLAGS = ["--no-progress", "--device", "cpu", "--save-every", "1", "--log-every", "3"]


@pytest.fixture
def cfg(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    return path


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(OMP_NUM_THREADS="1", **extra)  # the same thread count in every process: the same float sums
    return env


def _cmd(cfg, out, resume=False):
    return [sys.executable, "-m", "difflab", "train", str(cfg), "--out", str(out), *FLAGS, *(["--resume"] if resume else [])]


def _final(run, name):
    return load_file(str(checkpoint.list_checkpoints(run)[-1] / f"{name}.safetensors"))


def _log(run):
    return [r.split(",")[:2] for r in (run / "log.csv").read_text().splitlines()]


def _assert_same_run(a, b):
    assert checkpoint.list_checkpoints(a)[-1].name == checkpoint.list_checkpoints(b)[-1].name
    for name in ("model", "ema"):
        wa, wb = _final(a, name), _final(b, name)
        assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa), name
    assert _log(a) == _log(b)


def _wait_at_most(proc, seconds):
    deadline = time.monotonic() + seconds
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)


def _kill(proc) -> int:
    """SIGKILL the process if it still runs and wait for it; 1 if it was killed, else 0."""
    killed = proc.poll() is None
    if killed:
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    return int(killed)


def _temp_dirs(out):
    try:
        return {e.name for e in os.scandir(out) if e.name.startswith(".ckpt-")}
    except FileNotFoundError:
        return set()


def test_sigkill_at_random_moments_then_resume_is_bit_for_bit(cfg, tmp_path):
    ref = tmp_path / "straight"
    done = subprocess.run(_cmd(cfg, ref), env=_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr

    out = tmp_path / "killed"
    rng = random.Random(20240607)
    slow = _env(DIFFLAB_TEST_SLOW_SAVE="0.02")  # each save takes >= 80 ms: a wide window to land in
    kills, in_save, resumed_with_leftovers = 0, 0, 0
    for attempt in range(6):
        resume = (out / "config.json").exists()
        leftover = _temp_dirs(out)
        resumed_with_leftovers += bool(resume and leftover)
        proc = subprocess.Popen(_cmd(cfg, out, resume), env=slow, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            if attempt % 2 == 0:  # kill inside the n-th checkpoint write this process starts
                nth, seen = rng.randint(1, 4), set()
                deadline = time.monotonic() + 60
                while proc.poll() is None and len(seen) < nth and time.monotonic() < deadline:
                    seen |= _temp_dirs(out) - leftover
                    time.sleep(0.002)
                time.sleep(rng.uniform(0.0, 0.05))
            else:  # kill at a random time: while starting, training, saving or sampling
                _wait_at_most(proc, rng.uniform(1.0, 5.0))
            kills += _kill(proc)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode in (0, -signal.SIGKILL), proc.stderr.read()
        proc.stderr.close()
        in_save += bool(_temp_dirs(out) - leftover) and proc.returncode == -signal.SIGKILL  # killed mid-save

    final = subprocess.run(_cmd(cfg, out, resume=(out / "config.json").exists()), env=_env(), capture_output=True,
                           text=True, timeout=120)
    assert final.returncode == 0, final.stderr
    assert kills >= 4 and in_save >= 2 and resumed_with_leftovers >= 1, (kills, in_save, resumed_with_leftovers)
    _assert_same_run(ref, out)
    leftovers = [p for d in (out, out / "samples") for p in d.iterdir() if p.name.startswith(".")]
    assert not leftovers  # removed by the next save


def test_max_minutes_stops_with_a_checkpoint_then_resume_continues(cfg, tmp_path):
    quiet = dict(progress=False, device="cpu", log_every=3, save_every=10)
    straight = train(resolve(str(cfg)), tmp_path / "a", log=lambda *_: None, **quiet)
    lines = []
    out = train(resolve(str(cfg)), tmp_path / "b", log=lines.append, max_minutes=1e-9, **quiet)
    assert [p.name for p in checkpoint.list_checkpoints(out)] == ["ckpt-00000001"]  # saved although save_every is 10
    summary = lines[-1]
    assert "\n" not in summary and str(out) in summary and "step 1/30" in summary
    assert "examples/s" in summary and "final loss" in summary and "stopped at the --max-minutes limit" in summary
    assert "max_minutes" not in json.loads((out / "config.json").read_text())["train"]  # a limit of this session only
    with open(out / "log.csv", "a") as f:  # a row half-written by a process killed while logging
        f.write("2,0.97")
    train(None, out, resume=True, log=lines.append, progress=False, device="cpu")
    assert "resuming" in lines[-2] and lines[-1].endswith("done")
    _assert_same_run(straight, out)
    assert (out / "loss.png").exists() and (out / "samples" / "step_00000030.png").exists()


def test_a_time_limited_run_counts_its_bar_in_minutes(cfg, tmp_path, capsys):
    """--steps 1000000 --max-minutes 30 should not show a bar towards a million steps: it counts the minutes, with
    the step in its postfix; a run without a time limit counts steps."""
    quiet = dict(device="cpu", log=lambda *_: None)
    train(resolve(str(cfg)), tmp_path / "a", max_minutes=0.5, **quiet)
    bar = capsys.readouterr().err.replace("\r", "\n").strip().splitlines()[-1]
    assert "/0.5 min" in bar and "step=30/30" in bar and "loss=" in bar, bar
    train(resolve(str(cfg)), tmp_path / "b", **quiet)
    bar = capsys.readouterr().err.replace("\r", "\n").strip().splitlines()[-1]
    assert "30/30" in bar and "min" not in bar.split("|")[-1].split("[")[0], bar


def test_long_run_flags_are_recorded_and_summarised(cfg, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", str(cfg), "--out", str(out), "--no-progress", "--steps", "14", "--log-every", "5",
                 "--save-every", "7", "--sample-every", "4"])
    stdout, err = capsys.readouterr()
    assert code == 0, err
    tr = json.loads((out / "config.json").read_text())["train"]
    assert (tr["steps"], tr["log_every"], tr["save_every"], tr["sample_every"]) == (14, 5, 7, 4)
    assert [p.name for p in checkpoint.list_checkpoints(out)] == ["ckpt-00000007", "ckpt-00000014"]
    assert [r[0] for r in _log(out)[1:]] == ["5", "10", "14"]
    assert sorted(p.name for p in (out / "samples").iterdir()) == [f"step_{s:08d}.png" for s in (4, 8, 12, 14)]
    summary = stdout.strip().splitlines()[-1]
    assert summary.startswith(f"trained {out}: step 14/14 (14 steps in ") and "examples/s" in summary and "final loss" in summary
    # resuming takes the run's recorded settings; flags given then are recorded in turn
    code = main(["train", str(cfg), "--out", str(out), "--no-progress", "--resume", "--steps", "16", "--log-every", "1"])
    assert code == 0, capsys.readouterr().err
    tr = json.loads((out / "config.json").read_text())["train"]
    assert (tr["steps"], tr["log_every"], tr["save_every"]) == (16, 1, 7)
    assert [r[0] for r in _log(out)[1:]] == ["5", "10", "14", "15", "16"]
    # the run's own config.json is a config too (the run options in its train section included)
    code = main(["train", str(out / "config.json"), "--out", str(out), "--no-progress", "--resume", "--steps", "17"])
    assert code == 0, capsys.readouterr().err
    assert checkpoint.list_checkpoints(out)[-1].name == "ckpt-00000017"


def test_tensorboard_events_follow_the_csv(cfg, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = train(resolve(str(cfg)), tmp_path / "tb", progress=False, device="cpu", log=lambda *_: None, steps=20)
    acc = EventAccumulator(str(out))
    acc.Reload()
    events = acc.Scalars("train/loss")
    rows = _log(out)[1:]
    assert [e.step for e in events] == [int(r[0]) for r in rows]
    assert [e.value for e in events] == pytest.approx([float(r[1]) for r in rows], rel=1e-5)


@pytest.mark.parametrize("change,match", [
    ("train: {steps: 30, batch_size: 64, lr: 0.002}\nmodel: {hidden: 48, depth: 2, time_dim: 16}",
     r"cannot resume .* with a different config: model\.hidden \(run: 32, given: 48\); train\.lr \(run: 0\.001, given: 0\.002\)"),
    ("preset: moons", r"data\.name \(run: \"8gaussians\", given: \"moons\"\)"),
])
def test_resume_with_another_config_is_refused(cfg, tmp_path, capsys, change, match):
    out = tmp_path / "run"
    assert main(["train", str(cfg), "--out", str(out), "--no-progress", "--steps", "2"]) == 0
    other = tmp_path / "other.yaml"
    other.write_text(TINY + change + "\n")
    before = sorted(p.name for p in out.iterdir())
    capsys.readouterr()
    code = main(["train", str(other), "--out", str(out), "--no-progress", "--resume", "--steps", "4"])
    _, err = capsys.readouterr()
    assert code == 2 and err.count("\n") == 1
    import re
    assert re.search(match, err), err
    assert sorted(p.name for p in out.iterdir()) == before  # nothing touched


def test_resume_bad_input(cfg, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    code = main(["train", str(cfg), "--out", str(empty), "--resume", "--no-progress"])
    _, err = capsys.readouterr()
    assert code == 2 and f"cannot resume: {str(empty)!r} is not a run directory (no config.json)." in err
    code = main(["train", str(cfg), "--out", str(tmp_path / "nowhere"), "--resume", "--no-progress"])
    _, err = capsys.readouterr()
    assert code == 2 and "does not exist" in err
    out = train(resolve(str(cfg)), tmp_path / "run", steps=2, progress=False, device="cpu", log=lambda *_: None)
    with pytest.raises(DifflabError, match="with seed 7: the run was started with seed 0"):
        train(resolve(str(cfg)), out, seed=7, resume=True, progress=False, log=lambda *_: None)
    # the library names its parameters; the command line names the flags that set them
    for kwargs, match, flag in [({"max_minutes": 0}, "max_minutes must be a positive number", "--max-minutes 0"),
                                ({"save_every": -1}, "train.save_every must be an integer >= 0", "--save-every -1"),
                                ({"log_every": 0}, "train.log_every must be a positive integer", "--log-every 0")]:
        with pytest.raises(DifflabError, match=match):
            train(None, out, resume=True, progress=False, log=lambda *_: None, **kwargs)
        name, value = flag.split()
        assert main(["train", str(cfg), "--out", str(out), "--resume", "--no-progress", name, value]) == 2
        assert match.replace(match.split()[0], name) in capsys.readouterr().err


def test_resume_before_the_first_checkpoint_starts_over(cfg, tmp_path):
    quiet = dict(progress=False, device="cpu", log=lambda *_: None)
    straight = train(resolve(str(cfg)), tmp_path / "a", **quiet)
    out = train(resolve(str(cfg)), tmp_path / "b", **quiet)
    for ckpt in checkpoint.list_checkpoints(out):  # as if killed after config.json, before any save
        import shutil
        shutil.rmtree(ckpt)
    lines = []
    train(None, out, resume=True, progress=False, device="cpu", log=lines.append)
    assert "holds no checkpoint yet; starting it from step 0" in lines[0]
    _assert_same_run(straight, out)


def test_distillation_rounds_killed_and_resumed_end_bit_for_bit(cfg, tmp_path):
    """difflab distill (two rounds, 4 → 2 → 1 steps) killed at random moments and rerun with --resume ends with the
    same weights and logs in every round as an uninterrupted run."""
    teacher = tmp_path / "teacher"
    done = subprocess.run(_cmd(cfg, teacher), env=_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr

    def distill_cmd(out):
        return [sys.executable, "-m", "difflab", "distill", str(teacher), "--to", "1", "--from", "4", "--out", str(out),
                "--steps", "24", "--resume", "--no-progress", "--device", "cpu"]

    ref = tmp_path / "straight"
    done = subprocess.run(distill_cmd(ref), env=_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    out, rng, kills = tmp_path / "killed", random.Random(7), 0
    for _ in range(4):
        proc = subprocess.Popen(distill_cmd(out), env=_env(DIFFLAB_TEST_SLOW_SAVE="0.02"), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        _wait_at_most(proc, rng.uniform(1.5, 4.0))
        kills += _kill(proc)
        assert proc.returncode in (0, -signal.SIGKILL), proc.stderr.read()
        proc.stderr.close()
    final = subprocess.run(distill_cmd(out), env=_env(), capture_output=True, text=True, timeout=120)
    assert final.returncode == 0, final.stderr
    assert kills >= 2
    for name in ("round-2", "round-1"):
        _assert_same_run(ref / name, out / name)
