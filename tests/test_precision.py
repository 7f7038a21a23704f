"""Training options against the plain fp32 path with the same seed: gradient accumulation (same
steps up to rounding), bf16 autocast (losses within 5%), torch.compile and channels-last (same
losses up to rounding); bf16 refused where the CPU would only emulate it; and their bad values."""

import json

import pytest
import torch
from safetensors.torch import load_file

from difflab.cli.main import main
from difflab.config import resolve
from difflab.errors import DifflabError
from difflab import checkpoint
from difflab.training.diffusion import train

TOY = {"preset": "8gaussians", "model": {"hidden": 32, "depth": 2, "time_dim": 16}, "diffusion": {"T": 100},
       "train": {"steps": 20, "batch_size": 64, "log_every": 1, "save_every": 0, "sample_every": 0, "num_samples": 8},
       "sample": {"steps": 5}, "data": {"num": 2000}}
DIGITS = {"preset": "digits", "model": {"base_channels": 16, "channel_mult": [1, 2], "num_res_blocks": 1,
                                        "attention_resolutions": [4], "groups": 8},
          "diffusion": {"T": 100}, "train": {"steps": 4, "batch_size": 16, "log_every": 1, "save_every": 0, "sample_every": 0,
                                               "num_samples": 4},
          "sample": {"steps": 3}, "data": {"num": 64}}


def _run(cfg, out, **options):
    train(resolve(cfg), out, progress=False, log=lambda *_: None, device="cpu", **options)
    rows = (out / "log.csv").read_text().splitlines()[1:]
    losses = torch.tensor([float(r.split(",")[1]) for r in rows], dtype=torch.float64)
    weights = load_file(str(checkpoint.list_checkpoints(out)[-1] / "model.safetensors"))
    return losses, weights


def _assert_weights_close(a, b, rtol):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=rtol, atol=rtol * float(b[k].abs().max()), msg=k)


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    return _run(TOY, tmp_path_factory.mktemp("plain") / "run")


def test_grad_accum_equals_the_plain_step(plain, tmp_path):
    losses, weights = _run(TOY, tmp_path / "accum", grad_accum=4)  # 4 micro-batches of 16
    assert len(losses) == 20
    torch.testing.assert_close(losses, plain[0], rtol=1e-5, atol=0)
    _assert_weights_close(weights, plain[1], rtol=1e-4)
    assert json.loads((tmp_path / "accum" / "config.json").read_text())["train"]["grad_accum"] == 4


@pytest.fixture
def bf16_native(monkeypatch):
    """The numerics of bf16 autocast are checked on any CPU, as if it had native bf16."""
    from difflab.training import loop
    monkeypatch.setattr(loop, "native_bf16", lambda device: True)


def test_bf16_autocast_stays_close(plain, tmp_path, bf16_native):
    losses, _ = _run(TOY, tmp_path / "bf16", precision="bf16")
    assert not torch.equal(losses, plain[0])  # autocast did change the arithmetic
    rel = (losses - plain[0]).abs() / plain[0]
    assert rel.max() < 0.05, rel.max()
    assert json.loads((tmp_path / "bf16" / "config.json").read_text())["train"]["precision"] == "bf16"


def _compile_works() -> str | None:
    try:
        f = torch.compile(lambda x: torch.sin(x) * 2)
        f(torch.ones(3))
    except Exception as e:  # no C++ compiler, unsupported platform, ...
        return f"torch.compile does not work here: {type(e).__name__}: {str(e).splitlines()[0][:150] if str(e) else ''}"
    return None


def test_compile_gives_the_eager_losses(plain, tmp_path):
    reason = _compile_works()
    if reason:
        pytest.skip(reason)
    cfg = {**TOY, "train": {**TOY["train"], "steps": 5}}
    losses, weights = _run(cfg, tmp_path / "compiled", compile_model=True)
    torch.testing.assert_close(losses, plain[0][:5], rtol=1e-4, atol=0)
    eager = _run(cfg, tmp_path / "eager")[1]
    _assert_weights_close(weights, eager, rtol=1e-4)


def test_channels_last_gives_the_same_losses(tmp_path):
    base, w0 = _run(DIGITS, tmp_path / "nchw")
    losses, w1 = _run(DIGITS, tmp_path / "nhwc", channels_last=True)
    torch.testing.assert_close(losses, base, rtol=1e-4, atol=0)
    _assert_weights_close(w1, w0, rtol=1e-4)
    assert all(w.is_contiguous() for w in w1.values())  # saved in the ordinary layout


def test_compile_failure_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(torch, "compile", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("no C++ compiler found")))
    with pytest.raises(DifflabError, match="torch.compile is not usable here .*no C\\+\\+ compiler.*; turn train.compile off"):
        _run(TOY, tmp_path / "a", compile_model=True)
    # the usual way it fails: lazily, at the first forward pass, inside torch._inductor
    InductorError = type("InductorError", (RuntimeError,), {"__module__": "torch._inductor.exc"})

    class Broken(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, *args):
            raise InductorError("CppCompileError: C++ compile error")

    monkeypatch.setattr(torch, "compile", lambda net, **k: Broken(net))
    with pytest.raises(DifflabError, match="could not build the model on this machine .*CppCompileError.*turn train.compile off"):
        _run(TOY, tmp_path / "b", compile_model=True)


@pytest.mark.parametrize("options,match", [
    ({"grad_accum": 3}, "train.grad_accum 3 does not divide train.batch_size = 64"),
    ({"grad_accum": 0}, "train.grad_accum must be a positive integer, got 0"),
    ({"precision": "fp16"}, "train.precision must be one of fp32, bf16, got 'fp16'"),
])
def test_bad_options(tmp_path, options, match):
    with pytest.raises(DifflabError, match=match):
        _run(TOY, tmp_path / "run", **options)
    assert not (tmp_path / "run").exists()


def test_bf16_is_refused_where_the_cpu_would_emulate_it(tmp_path, monkeypatch, capsys):
    from difflab.training import loop
    monkeypatch.setattr(loop, "native_bf16", lambda device: False)
    with pytest.raises(DifflabError, match="bf16 would run slower than fp32 here: this CPU has neither AVX512-BF16 "
                                           "nor AMX.*use fp32"):
        _run(TOY, tmp_path / "run", precision="bf16")
    assert not (tmp_path / "run").exists()
    cfg = tmp_path / "toy.json"
    cfg.write_text(json.dumps(TOY))
    code = main(["train", str(cfg), "--out", str(tmp_path / "r"), "--no-progress", "--precision", "bf16"])
    _, err = capsys.readouterr()
    assert code == 2 and "use fp32" in err and err.count("\n") == 1 and not (tmp_path / "r").exists()
    _run(TOY, tmp_path / "fp32", precision="fp32")  # fp32 is never refused


@pytest.mark.skipif(not __import__("platform").machine().lower() in ("x86_64", "amd64")
                    or not __import__("os").path.exists("/proc/cpuinfo"), reason="reads x86 Linux CPU flags")
def test_native_bf16_matches_the_cpu_flags():
    from difflab.training.loop import native_bf16
    flags = set()
    for line in open("/proc/cpuinfo"):
        if line.startswith("flags"):
            flags |= set(line.split(":", 1)[1].split())
    assert native_bf16(torch.device("cpu")) == bool(flags & {"avx512_bf16", "amx_bf16", "amx_tile"})


def test_cli_flags(tmp_path, capsys, bf16_native):
    cfg = tmp_path / "toy.json"
    cfg.write_text(json.dumps(TOY))
    code = main(["train", str(cfg), "--out", str(tmp_path / "r"), "--no-progress", "--steps", "4", "--grad-accum", "2",
                 "--precision", "bf16", "--channels-last", "--no-compile"])
    out, err = capsys.readouterr()
    assert code == 0, err
    tr = json.loads((tmp_path / "r" / "config.json").read_text())["train"]
    assert (tr["steps"], tr["grad_accum"], tr["precision"], tr["channels_last"], tr["compile"]) == (4, 2, "bf16", True, False)
    code = main(["train", str(cfg), "--out", str(tmp_path / "s"), "--no-progress", "--grad-accum", "5"])
    _, err = capsys.readouterr()
    assert code == 2 and "--grad-accum 5 does not divide" in err and err.count("\n") == 1
    with pytest.raises(SystemExit):
        main(["train", str(cfg), "--out", str(tmp_path / "t"), "--precision", "fp8"])
