"""Verdicts from stored numbers (difflab.reproduce.claims): the effect's interval over seeds is the Student-t one
recomputed here from its formula, the margin is two floor sds, and a stored verdict that its numbers do not give is
refused."""

from __future__ import annotations

import json
import math

import pytest
from scipy.stats import t as student_t

from difflab.errors import DifflabError
from difflab.metrics.intervals import AGREES, DISAGREES, NOT_RESOLVED
from difflab.reproduce.claims import Claim, claim_table, read_claims, write_claims


def _claim(a, b, claimed="negative", floor_sd=0.5, text="B has the lower FD"):
    return Claim(text, "a paper", "FD[digits-classifier]", "A", "B", claimed, tuple(a), tuple(b),
                 tuple(range(len(a))), floor=3.0, floor_sd=floor_sd)


def test_effect_is_the_student_t_interval_of_the_per_seed_differences():
    c = _claim([10.0, 11.0, 12.5], [7.0, 7.5, 9.0])
    d = [-3.0, -3.5, -3.5]
    mean = sum(d) / 3
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / 2)
    half = student_t.ppf(0.975, 2) * sd / math.sqrt(3)
    assert c.effect() == pytest.approx((mean, mean - half, mean + half))
    assert c.margin == pytest.approx(1.0)  # two floor sds
    assert c.verdict() == AGREES


@pytest.mark.parametrize("a,b,claimed,floor_sd,expected", [
    ([10, 11, 12], [7, 8, 9], "negative", 0.5, AGREES),           # B lower by 3 on every seed, margin 1
    ([10, 11, 12], [7, 8, 9], "positive", 0.5, DISAGREES),        # the paper claimed the opposite direction
    ([10, 11, 12], [9.5, 10.5, 11.5], "negative", 0.5, NOT_RESOLVED),  # lower on every seed, but by less than the margin
    ([10, 11, 12], [9.5, 10.5, 11.5], "negative", 0.0, AGREES),   # ... which alone decides it
    ([10, 11, 12], [6, 13, 9], "negative", 0.0, NOT_RESOLVED),    # seeds disagree: the interval straddles 0
])
def test_verdict_on_constructed_numbers(a, b, claimed, floor_sd, expected):
    assert _claim(a, b, claimed, floor_sd).verdict() == expected


def test_claims_round_trip_and_a_typed_verdict_is_refused(tmp_path):
    claims = [_claim([10, 11, 12], [7, 8, 9]), _claim([10, 11, 12], [6, 13, 9], text="noisy")]
    path = write_claims(tmp_path / "x.json", "x", "difflab reproduce x", claims, num=450)
    info, back = read_claims(path)
    assert info["num"] == 450 and back == claims
    assert [c.verdict() for c in back] == [AGREES, NOT_RESOLVED]
    table = "\n".join(claim_table(back))
    assert "**agrees**" in table and "**not resolved at this scale**" in table
    body = json.loads(path.read_text())
    body["claims"][1]["verdict"] = "agrees"  # someone "fixes" a verdict by hand
    path.write_text(json.dumps(body))
    with pytest.raises(DifflabError, match="stored verdict 'agrees' of 'noisy' is not what its numbers give"):
        read_claims(path)


def test_a_claim_needs_one_value_per_seed():
    with pytest.raises(DifflabError, match="one value per seed"):
        Claim("x", "p", "FD", "A", "B", "negative", (1.0, 2.0), (1.0,), (0, 1))


def test_index_rewrites_only_the_table_between_its_markers(tmp_path, capsys):
    from difflab.cli.main import main
    from difflab.reproduce.index import END, START

    out = tmp_path / "results"
    out.mkdir()
    (out / "README.md").write_text(f"# Results\n\nintro stays\n\n{START}\nold table\n{END}\n\n## Reading the plots\nstays too\n")
    write_claims(out / "schedules.json", "schedules", "difflab reproduce schedules",
                 [_claim([10, 11, 12], [7, 8.5, 9], text="cosine better")], num=450)
    (out / "ddim-eta.md").write_text("# an old report\n")
    assert main(["reproduce", "index", "--out", str(out)]) == 0
    text = (out / "README.md").read_text()
    assert "intro stays" in text and "stays too" in text and "old table" not in text
    row = next(line for line in text.splitlines() if "cosine better" in line)
    mean, lo, hi = _claim([10, 11, 12], [7, 8.5, 9]).effect()
    assert f"B − A = {mean:+.3g} [{lo:+.3g}, {hi:+.3g}]; floor 3.00 ± 0.50" in row and "**agrees**" in row
    assert "`difflab reproduce schedules`" in row
    assert "Not yet re-run" in text and "[ddim-eta](ddim-eta.md)" in text  # an old report: named, with no verdict
    assert "Not run yet" in text and "`difflab reproduce likelihood`" in text  # no report: no link to a missing file
    assert "`difflab reproduce schedules --dataset mnist`" in text  # the MNIST-scale report, named by its command
    body = json.loads((out / "schedules.json").read_text())
    body["claims"][0]["verdict"] = "disagrees"
    (out / "schedules.json").write_text(json.dumps(body))
    assert main(["reproduce", "index", "--out", str(out)]) == 2
    assert "not what its numbers give" in capsys.readouterr().err
    assert "old table" not in (out / "README.md").read_text()  # nothing half-written: the good table stays


def test_index_states_the_run_time_as_the_sum_of_the_stored_minutes(tmp_path):
    from difflab.reproduce.index import rows

    for name, minutes, threads in (("schedules", 85.5, 1), ("ddim-eta", 38.7, 2)):
        write_claims(tmp_path / f"{name}.json", name, f"difflab reproduce {name}", [_claim([10, 11, 12], [7, 8.5, 9])],
                     minutes=minutes, threads=threads)
    write_claims(tmp_path / "objectives.json", "objectives", "difflab reproduce objectives",
                 [_claim([10, 11, 12], [7, 8.5, 9])])  # an older file: no minutes stored
    line = next(x for x in rows(tmp_path, ["schedules", "ddim-eta", "objectives"]) if x.startswith("Run time"))
    assert "the 2 reproductions above took 2.1 hours" in line  # (85.5 + 38.7) / 60 = 2.07
    assert "schedules 86 min, ddim-eta 39 min" in line and "schedules ran on one thread" in line
    assert "not timed: objectives" in line


@pytest.mark.parametrize("argv,message", [
    (["reproduce"], "give one reproduction's name"),
    (["reproduce", "schedules", "--all"], "not both"),
    (["reproduce", "schedules", "--force"], "--force applies to --all"),
    (["reproduce", "ddim-eta", "--dataset", "mnist"], "runs on digits only, not on 'mnist'"),
    (["reproduce", "schedules", "--dataset", "cifar10"], "runs on digits, mnist only"),
    (["reproduce", "swiss-roll", "--dataset", "digits"], "runs on its own data (no --dataset) only"),
    (["reproduce", "--all", "--dataset", "mnist"], "--dataset applies to one named reproduction"),
])
def test_reproduce_arguments_are_checked(argv, message, capsys):
    from difflab.cli.main import main

    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_reproduce_all_skips_what_is_written_and_rebuilds_the_table(tmp_path, monkeypatch):
    """--all runs the reproductions not yet written (a --quick file does not count for a full run), skips the rest
    unless --force, and ends with the claims table."""
    import difflab.reproduce as rp

    out = tmp_path / "results"
    out.mkdir()
    write_claims(out / "schedules.json", "schedules", "difflab reproduce schedules", [_claim([10, 11, 12], [7, 8.5, 9])])
    write_claims(out / "ddim-eta.json", "ddim-eta", "difflab reproduce ddim-eta --quick", [_claim([1, 2, 3], [1, 2, 3])],
                 quick=True)
    for name in rp.CLAIMS:
        if name not in rp.VERDICT_CLAIMS:
            (out / f"{name}.md").write_text("# done\n")
    ran = []
    monkeypatch.setattr(rp, "reproduce", lambda name, **kw: ran.append((name, kw["command"])))
    readme = rp.reproduce_all(out=out, runs=tmp_path / "runs")
    assert [n for n, _ in ran] == [n for n in rp.CLAIMS if n in rp.VERDICT_CLAIMS and n != "schedules"]
    assert ("ddim-eta", "difflab reproduce ddim-eta") in ran  # the quick file is redone in full
    assert "cosine" not in readme.read_text() and "B has the lower FD" in readme.read_text()
    ran.clear()
    rp.reproduce_all(out=out, runs=tmp_path / "runs", force=True)
    assert [n for n, _ in ran] == list(rp.CLAIMS)


def test_draw_gives_sample_i_its_class_whatever_the_batch():
    """reproduce.common.draw: sample i gets classes[i % len] and the same noise stream in any batching."""
    import torch

    from difflab.reproduce.common import draw

    class Recorder:
        def sample(self, n, generator=None, classes=None, **options):
            return torch.stack([torch.tensor([float(c), torch.randn(1, generator=g).item()])
                                for c, g in zip(classes, generator)])

    one = draw(Recorder(), 7, seed=2, batch=100, classes=list(range(5)))
    split = draw(Recorder(), 7, seed=2, batch=3, classes=list(range(5)))
    assert one[:, 0].tolist() == [0, 1, 2, 3, 4, 0, 1] and torch.equal(one, split)


def test_run_or_train_starts_over_a_run_killed_before_its_first_checkpoint(tmp_path):
    """A reproduction killed before a run's first checkpoint leaves only its config: the next invocation trains it
    from step 0 with the run's own seed, and ends where an uninterrupted run does, bit for bit."""
    import shutil

    import torch

    from difflab import checkpoint
    from difflab.reproduce.common import Context, preset, run_or_train

    cfg = preset("digits", data={"num": 64}, model={"base_channels": 16, "groups": 8, "attention_resolutions": []},
                 diffusion={"T": 50}, train={"batch_size": 8, "sample_every": 0, "log_every": 2, "save_every": 4})
    ctx = Context("test", tmp_path / "out", tmp_path / "runs", quick=True, command="test")
    whole, _ = run_or_train(ctx, "whole", cfg, steps=4, seed=3)
    killed, _ = run_or_train(ctx, "killed", cfg, steps=4, seed=3)
    for ckpt in checkpoint.list_checkpoints(killed.path):
        shutil.rmtree(ckpt) if ckpt.is_dir() else ckpt.unlink()
    assert (killed.path / "config.json").is_file() and not checkpoint.list_checkpoints(killed.path)
    again, reused = run_or_train(ctx, "killed", cfg, steps=4, seed=3)
    assert not reused and again.step == 4
    for a, b in zip(whole.model.state_dict().values(), again.model.state_dict().values()):
        assert torch.equal(a, b)
