"""Class conditioning, label dropout, classifier-free guidance (Ho & Salimans 2022) and its
composition, and exported / shipped models."""

import json
import math
import shutil

import pytest
import torch

from difflab import schedules
from difflab.cli.main import main
from difflab.denoiser import ModelDenoiser
from difflab.errors import DifflabError
from difflab.guidance import ClassifierFreeGuidance, conditional_denoiser, guided_eps
from difflab.models import build_model
from difflab.samplers import sample
from difflab.toy import GaussianMixture
from difflab.training.diffusion import drop_labels

MEANS = torch.tensor([[3.0, 0.0], [0.0, 3.0], [-3.0, 0.0], [0.0, -3.0]], dtype=torch.float64)
STD = 0.2


class OracleClassModel(torch.nn.Module):
    """A "network" whose ε is the exact ε* of mixture component y (of the whole mixture for the
    null label y = K): a class-conditional model with nothing learned, on a discrete schedule
    (model input x_t, model time t)."""

    def __init__(self, schedule):
        super().__init__()
        self.num_classes = len(MEANS)
        self.schedule = schedule
        self.parts = [GaussianMixture(MEANS[k:k + 1], torch.tensor([STD]), torch.tensor([1.0])).denoiser(schedule)
                      for k in range(len(MEANS))]
        weights = torch.full((len(MEANS),), 1.0 / len(MEANS), dtype=torch.float64)
        self.whole = GaussianMixture(MEANS, torch.full((len(MEANS),), STD), weights).denoiser(schedule)
        self.calls = 0

    def forward(self, x, t, y):
        self.calls += 1
        out = torch.empty_like(x)
        for k in range(self.num_classes + 1):
            rows = y == k
            if rows.any():
                oracle = self.whole if k == self.num_classes else self.parts[k]
                out[rows] = oracle(x[rows], t[rows]).eps
        return out


def test_guided_eps_is_ho_salimans_eq6_for_one_condition_and_a_sum_for_several():
    g = torch.Generator().manual_seed(0)
    eu, e1, e2 = (torch.randn(5, 3, generator=g, dtype=torch.float64) for _ in range(3))
    w = 2.5
    assert torch.allclose(guided_eps(eu, [e1], w), (1 + w) * e1 - w * eu, atol=1e-12)
    assert torch.allclose(guided_eps(eu, [e1], 0.0), e1, atol=1e-12)
    # product of experts: each condition's guided difference added to the unconditional ε
    assert torch.allclose(guided_eps(eu, [e1, e2], w), eu + (1 + w) * (e1 - eu) + (1 + w) * (e2 - eu), atol=1e-12)


def test_cfg_denoiser_combines_the_model_outputs_in_one_batched_call():
    schedule = schedules.get("linear", 100)
    model = OracleClassModel(schedule)
    base = ModelDenoiser(model, schedule, "eps")
    x = torch.randn(6, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    t = torch.full((6,), 40)
    guided = ClassifierFreeGuidance(base, [torch.tensor([0, 1, 2, 3, 0, 1])], 3.0)
    model.calls = 0
    pred = guided(x, t)
    assert model.calls == 1
    eps_u = model.whole(x, t).eps
    eps_c = torch.stack([model.parts[k](x[i:i + 1], t[i:i + 1]).eps[0] for i, k in enumerate([0, 1, 2, 3, 0, 1])])
    want = 4.0 * eps_c - 3.0 * eps_u
    assert torch.allclose(pred.eps, want, atol=1e-10)
    a, s = schedule.alpha(t)[:, None], schedule.sigma(t)[:, None]
    assert torch.allclose(pred.x0, (x - s * want) / a, atol=1e-9)


@pytest.mark.parametrize("w", [0.0, 3.0])
def test_conditional_sampling_lands_on_the_requested_component(w, one_thread):
    schedule = schedules.get("linear", 100)
    base = ModelDenoiser(OracleClassModel(schedule), schedule, "eps")
    n = 400
    classes = [k % 4 for k in range(n)]
    den = conditional_denoiser(base, n, classes, "cfg" if w else None, w)
    x = sample(den, (n, 2), sampler="ddim", steps=50, generator=torch.Generator().manual_seed(2)).double()
    target = MEANS[torch.tensor(classes)]
    hit = ((x - target).norm(dim=1) < 4 * STD).double().mean().item()
    assert hit > 0.95, hit


def test_unconditional_sampling_of_a_conditional_model_uses_the_null_label(one_thread):
    schedule = schedules.get("linear", 100)
    base = ModelDenoiser(OracleClassModel(schedule), schedule, "eps")
    x = sample(base.with_labels(4), (800, 2), sampler="ddim", steps=50, generator=torch.Generator().manual_seed(3)).double()
    nearest = torch.cdist(x, MEANS).argmin(1)
    shares = torch.bincount(nearest, minlength=4).double() / 800
    assert (shares - 0.25).abs().max() < 0.06, shares


def test_drop_labels_rate_and_null_value():
    y = torch.arange(20000) % 10
    out = drop_labels(y, 0.1, 10, torch.Generator().manual_seed(0))
    dropped = out == 10
    assert torch.equal(out[~dropped], y[~dropped])
    rate = dropped.double().mean().item()
    assert abs(rate - 0.1) < 4 * math.sqrt(0.1 * 0.9 / 20000)
    assert torch.equal(drop_labels(y, 0.0, 10, torch.Generator()), y)


def _unet(**kw):
    cfg = {"type": "unet", "in_channels": 1, "image_size": 8, "base_channels": 8, "channel_mult": [1, 2],
           "num_res_blocks": 1, "attention_resolutions": [4], "groups": 4, "num_classes": 3, **kw}
    net = build_model(cfg)
    torch.manual_seed(0)
    for p in net.parameters():  # the zero-initialised output layers would hide the condition
        torch.nn.init.normal_(p, std=0.1)
    return net.eval()


def test_unet_class_embedding_changes_the_output_and_checks_labels():
    net = _unet()
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([10, 10])
    with torch.no_grad():
        a, b = net(x, t, torch.tensor([0, 0])), net(x, t, torch.tensor([1, 1]))
        null = net(x, t, torch.tensor([3, 3]))
        assert torch.allclose(net(x, t), null)  # no labels = the null label
    assert (a - b).abs().max() > 1e-3
    with pytest.raises(DifflabError, match="class label 4 is out of range"):
        net(x, t, torch.tensor([0, 4]))
    with pytest.raises(DifflabError, match="integers of shape"):
        net(x, t, torch.tensor([0.5, 1.0]))
    with pytest.raises(DifflabError, match="unconditional"):
        _unet(num_classes=None)(x, t, torch.tensor([0, 1]))
    with pytest.raises(DifflabError, match="num_classes"):
        _unet(num_classes=0)


def test_guidance_errors():
    schedule = schedules.get("linear", 100)
    cond = ModelDenoiser(OracleClassModel(schedule), schedule)
    uncond = ModelDenoiser(_unet(num_classes=None), schedule)
    with pytest.raises(DifflabError, match="unconditional"):
        conditional_denoiser(uncond, 4, [1], "cfg", 3.0)
    with pytest.raises(DifflabError, match="out of range"):
        conditional_denoiser(cond, 4, [7], "cfg", 3.0)
    with pytest.raises(DifflabError, match="needs the class"):
        conditional_denoiser(cond, 4, None, "cfg", 3.0)
    with pytest.raises(DifflabError, match="at least two"):
        conditional_denoiser(cond, 4, [1], "cfg", 3.0, compose=True)
    with pytest.raises(DifflabError, match="finite"):
        conditional_denoiser(cond, 4, [1], "cfg", float("nan"))
    with pytest.raises(DifflabError, match="guidance must be"):
        conditional_denoiser(cond, 4, [1], "bogus", 1.0)


TINY_COND = """
preset: digits
model: {base_channels: 8, channel_mult: [1, 2], num_res_blocks: 1, attention_resolutions: [4], groups: 4, num_classes: 10}
diffusion: {T: 50}
train: {steps: 4, batch_size: 16, log_every: 2, save_every: 0, sample_every: 0, num_samples: 4, label_dropout: 0.2}
sample: {steps: 3}
data: {num: 64}
"""


@pytest.fixture(scope="module")
def cond_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("cond")
    (root / "c.yaml").write_text(TINY_COND)
    assert main(["train", str(root / "c.yaml"), "--out", str(root / "run"), "--no-progress"]) == 0
    return root


def test_cli_class_conditional_sampling_and_errors(cond_run, capsys):
    run, out = cond_run / "run", cond_run / "s.npz"
    args = ["sample", str(run), "--num", "6", "--steps", "3", "--no-progress", "--out", str(out)]
    assert main(args + ["--class", "3", "--guidance", "cfg", "--scale", "2"]) == 0
    assert main(args + ["--classes", "3,7", "--compose"]) == 0
    capsys.readouterr()
    for extra, message in [(["--class", "12"], "class 12 is out of range"),
                           (["--scale", "2"], "--scale needs --guidance cfg"),
                           (["--compose"], "--compose needs --classes"),
                           (["--guidance", "cfg"], "needs the class")]:
        assert main(args + extra) == 2
        assert message in capsys.readouterr().err


def test_cli_cfg_on_an_unconditional_run_is_refused(tmp_path, tiny_digits_config, capsys):
    assert main(["train", str(tiny_digits_config), "--out", str(tmp_path / "u"), "--steps", "2", "--no-progress"]) == 0
    capsys.readouterr()
    code = main(["sample", str(tmp_path / "u"), "--class", "1", "--guidance", "cfg", "--num", "2", "--steps", "2",
                 "--no-progress", "--out", str(tmp_path / "x.npz")])
    assert code == 2 and "unconditional" in capsys.readouterr().err


def test_conditional_model_needs_labels_in_range(tmp_path, capsys):
    (tmp_path / "bad.yaml").write_text(TINY_COND.replace("num_classes: 10", "num_classes: 5"))
    assert main(["train", str(tmp_path / "bad.yaml"), "--out", str(tmp_path / "r"), "--no-progress"]) == 2
    assert "labels up to 9, but model.num_classes is 5" in capsys.readouterr().err
    assert not (tmp_path / "r" / "config.json").exists()


def test_export_round_trip_and_corruption(cond_run, capsys):
    import difflab
    from safetensors.torch import load_file

    from difflab import checkpoint

    run, exported = cond_run / "run", cond_run / "exported"
    shutil.rmtree(exported, ignore_errors=True)
    assert main(["export", str(run), "--out", str(exported), "--notes", "tiny"]) == 0
    meta = json.loads((exported / "model.json").read_text())
    assert meta["notes"] == "tiny" and meta["step"] == 4
    ema = load_file(str(checkpoint.latest_valid(run) / "ema.safetensors"))
    loaded = difflab.load(exported)
    for k, v in loaded.model.state_dict().items():
        assert torch.equal(v, ema[k])
    assert main(["export", str(run), "--out", str(exported)]) == 2  # never overwrites
    assert "already exists" in capsys.readouterr().err
    broken = cond_run / "broken"
    shutil.copytree(exported, broken, dirs_exist_ok=True)
    data = (broken / "model.safetensors").read_bytes()
    (broken / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(DifflabError, match="truncated or corrupt"):
        difflab.load(broken)


def test_shipped_models_load_by_name_and_sample():
    import difflab
    from difflab import pretrained

    assert {"mnist", "fashion-mnist"} <= set(pretrained.names())
    run = difflab.load("mnist")
    assert run.model.num_classes == 10 and run.shape == (1, 28, 28)
    x = run.sample(2, steps=2, classes=[3, 7], guidance="cfg", scale=3.0, generator=torch.Generator().manual_seed(0))
    assert x.shape == (2, 1, 28, 28) and 0 <= x.min() and x.max() <= 1
    with pytest.raises(DifflabError, match="not the name of a pretrained model"):
        difflab.load("no-such-model")
