"""difflab models out to diffusers and ONNX, diffusers models in, and any function as a denoiser.

References: diffusers itself (its UNet2DModel, schedulers and pipelines run the exported folders; a UNet2DModel built by
diffusers is the reference for the imported one), onnxruntime for the ONNX graph, and the exact Gaussian-mixture
oracle for the scheduler ↔ sampler table of docs/diffusers.md.
"""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import difflab
from difflab import checkpoint, samplers, schedules
from difflab.config import with_defaults
from difflab.denoiser import build_network, from_callable
from difflab.errors import DifflabError
from difflab.formats import diffusers as fd

diffusers = pytest.importorskip("diffusers", reason="the diffusers extra is not installed: pip install 'difflab[diffusers]'")
diffusers.utils.logging.set_verbosity_error()
diffusers.utils.logging.disable_progress_bar()
warnings.filterwarnings("ignore", message=".*accelerate.*")

ROOT = Path(__file__).resolve().parents[1]
SHAPE = (1, 8, 8)


def make_run(path: Path, parameterization: str = "eps", num_classes: int | None = None, clip: bool = True,
             schedule: str = "linear", seed: int = 0, **params) -> Path:
    """A run directory holding a tiny U-Net with random weights (perturbed so no layer is zero)."""
    model = {"type": "unet", "in_channels": 1, "image_size": 8, "base_channels": 32, "channel_mult": [1, 2],
             "num_res_blocks": 1, "attention_resolutions": [4], "dropout": 0.0, "num_classes": num_classes}
    config = with_defaults({
        "data": {"name": "digits"}, "model": model,
        "diffusion": {"schedule": schedule, "T": 1000, "parameterization": parameterization, "schedule_params": params},
        "sample": {"sampler": "ddim", "steps": 10, "eta": 0.0, "clip": clip},
        "normalization": {"kind": "image", "shape": list(SHAPE), "shift": [0.5], "scale": 0.5}})
    torch.manual_seed(seed)
    net = build_network(config)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps(config))
    state = net.state_dict()
    checkpoint.save(path, 1, {"model": state, "ema": state, "trainer": {}}, {})
    return path


@pytest.fixture(scope="module")
def trained_eps_run(tmp_path_factory):
    """An ε-prediction digits U-Net trained 150 steps (about 20 s): random ε networks drive DDIM into saturated
    images, which would make a comparison of images vacuous."""
    from difflab.config import resolve
    from difflab.training.diffusion import train

    cfg = resolve({"preset": "digits", "diffusion": {"schedule": "linear"},
                   "train": {"steps": 150, "batch_size": 64, "log_every": 50, "save_every": 150, "sample_every": 0}})
    return train(cfg, tmp_path_factory.mktemp("eps") / "run", progress=False, log=lambda *_: None)


def inner(images: np.ndarray) -> float:
    """The fraction of pixels strictly inside (0, 1): a comparison of saturated images would prove nothing."""
    return float(((images > 0.01) & (images < 0.99)).mean())


# ------------------------------------------------------------------------------------ export to diffusers
@pytest.mark.parametrize("parameterization", ["eps", "v"])
def test_exported_folder_samples_like_difflab_in_diffusers_pipelines(tmp_path, parameterization, trained_eps_run):
    run = trained_eps_run if parameterization == "eps" else make_run(tmp_path / "run", parameterization)
    out = fd.export(run, tmp_path / "hf")
    ours = difflab.load(run)
    for pipeline, sampler, steps, kwargs in ((diffusers.DDIMPipeline, "ddim", 10, {"eta": 0.0, "use_clipped_model_output": True}),
                                             (diffusers.DDPMPipeline, "ddpm", 20, {})):
        pipe = pipeline.from_pretrained(out)
        pipe.set_progress_bar_config(disable=True)
        theirs = pipe(batch_size=4, generator=torch.Generator().manual_seed(0), num_inference_steps=steps,
                      output_type="np", **kwargs).images
        mine = ours.sample(4, sampler=sampler, steps=steps, generator=torch.Generator().manual_seed(0))
        mine = mine.permute(0, 2, 3, 1).numpy()
        assert inner(mine) > 0.3
        assert np.abs(theirs - mine).max() < 1e-3, (pipeline.__name__, np.abs(theirs - mine).max())


def test_exported_class_conditional_model_matches_in_the_pipeline_loop(tmp_path):
    """The shipped class-conditional MNIST model: diffusers' UNet2DModel + DDIMScheduler, driven as DDIMPipeline drives
    them but with class labels (the pipelines pass none), give difflab's images; the null label K exports too."""
    out = fd.export("mnist", tmp_path / "hf")
    unet = diffusers.UNet2DModel.from_pretrained(out / "unet").eval()
    scheduler = diffusers.DDIMScheduler.from_pretrained(out / "scheduler")
    assert unet.config.num_class_embeds == 11 and json.loads((out / fd.DIFFLAB).read_text())["num_classes"] == 10
    run = difflab.load("mnist")
    x = torch.randn(3, 1, 28, 28, generator=torch.Generator().manual_seed(5))
    t = torch.tensor([1, 400, 1000])
    y = torch.tensor([2, 10, 7])
    with torch.no_grad():
        gap = (run.model(x, t.float(), y) - unet(x, t - 1, class_labels=y).sample).abs().max()
    assert gap < 1e-4
    scheduler.set_timesteps(10)
    x_T = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    x, y = x_T.clone(), torch.tensor([0, 3, 7, 9])
    with torch.no_grad():
        for k in scheduler.timesteps:
            x = scheduler.step(unet(x, k, class_labels=y).sample, k, x, eta=0.0, use_clipped_model_output=True).prev_sample
    theirs = (x / 2 + 0.5).clamp(0, 1)
    mine = run.sample(4, sampler="ddim", steps=10, x_T=x_T, classes=[0, 3, 7, 9])
    assert inner(mine.numpy()) > 0.2
    assert (theirs - mine).abs().max() < 1e-3


def test_time_embedding_shift_is_exact_in_float64():
    """W' e(k) = W e(k + 1) for the sinusoidal embedding, to float64 rounding."""
    from difflab.models import timestep_embedding

    w = torch.randn(12, 16, dtype=torch.float64)
    k = torch.tensor([0.0, 5.0, 999.0], dtype=torch.float64)
    shifted = fd.shift_time_embedding(w, 16)
    e = lambda s: timestep_embedding(s, 16).double()  # noqa: E731
    assert torch.allclose(e(k) @ shifted.T, e(k + 1) @ w.T, atol=1e-4)  # the embedding itself is float32
    assert not torch.allclose(e(k) @ w.T, e(k + 1) @ w.T, atol=1e-2)


@pytest.mark.parametrize("schedule,params,T", [("linear", {}, 1000), ("linear", {}, 250), ("quadratic", {}, 1000),
                                                ("cosine", {}, 1000), ("linear", {"zero_terminal_snr": True}, 1000),
                                                ("linear", {"beta_start": 5e-5, "beta_end": 0.03}, 1000)])
def test_scheduler_config_gives_difflab_alpha_bar(schedule, params, T):
    """diffusers' alphas_cumprod[k] from the exported scheduler config equals difflab's ᾱ_{k+1}, and reading that
    config back gives the same difflab schedule."""
    diffusion = {"schedule": schedule, "T": T, "schedule_params": dict(params), "parameterization": "eps"}
    config = fd.scheduler_config(diffusion, {"clip": True})
    theirs = diffusers.DDPMScheduler.from_config(config).alphas_cumprod.double()
    mine = schedules.get(schedule, T, **params).alpha_bar[1:]
    assert torch.allclose(theirs, mine, rtol=1e-5, atol=1e-10)
    back = fd.diffusion_section(config)
    again = schedules.get(back["schedule"], back["T"], **back["schedule_params"]).alpha_bar
    assert torch.allclose(again, schedules.get(schedule, T, **params).alpha_bar, rtol=1e-12, atol=0)


@pytest.mark.parametrize("diffusion,match", [
    ({"schedule": "sigmoid"}, "'sigmoid' schedule"),
    ({"schedule": "vp"}, "'vp' schedule"),
    ({"schedule": "cosine", "schedule_params": {"s": 0.02}}, "s = 0.02"),
    ({"parameterization": "edm"}, "'edm' parameterization"),
    ({"parameterization": "score"}, "'score' parameterization"),
    ({"learned_variance": True}, "learned-variance"),
])
def test_export_refuses_what_diffusers_cannot_express(diffusion, match):
    base = {"schedule": "linear", "T": 1000, "schedule_params": {}, "parameterization": "eps", "learned_variance": False}
    with pytest.raises(DifflabError, match=match):
        fd.scheduler_config({**base, **diffusion}, {"clip": True})


@pytest.mark.parametrize("model,match", [
    ({"type": "mlp"}, "'mlp' model"),
    ({"scale_shift_norm": True}, "scale_shift_norm"),
    ({"num_heads": 4}, "num_heads = 4"),
    ({"cond_channels": 1}, "cond_channels"),
    ({"groups": 64}, "fewer channels"),
])
def test_export_refuses_networks_without_a_unet2dmodel_equivalent(model, match):
    from difflab.models import complete_config

    base = {"type": "unet", "image_size": 8, "base_channels": 32, "channel_mult": [1, 2], "attention_resolutions": [4]}
    config = {**base, **model} if model.get("type") != "mlp" else {"type": "mlp"}
    with pytest.raises(DifflabError, match=match):
        fd.unet_config(complete_config(config))


def test_refused_export_writes_nothing(tmp_path):
    run = make_run(tmp_path / "run", "eps", schedule="sigmoid")
    r = subprocess.run([sys.executable, "-m", "difflab", "export", str(run), "--format", "diffusers",
                        "--out", str(tmp_path / "hf")], capture_output=True, text=True)
    assert r.returncode != 0 and "sigmoid" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "hf").exists() and [p.name for p in tmp_path.iterdir()] == ["run"]


# ------------------------------------------------------------------------------------ import from diffusers
def foreign_unet(**overrides):
    """A UNet2DModel in a layout difflab's own U-Net does not have (sin before cos, shifted frequencies, asymmetric
    down-sampling padding, 8-channel attention heads), random weights."""
    torch.manual_seed(1)
    kwargs = dict(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(32, 64), layers_per_block=1,
                  down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
                  norm_num_groups=16, flip_sin_to_cos=False, freq_shift=1, downsample_padding=0, attention_head_dim=8)
    unet = diffusers.UNet2DModel(**{**kwargs, **overrides}).eval()
    with torch.no_grad():
        for p in unet.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return unet


@pytest.mark.parametrize("layout", ["pipeline", "flat"])
def test_diffusers_folder_loads_and_gives_diffusers_outputs(tmp_path, layout):
    unet = foreign_unet()
    scheduler = diffusers.DDIMScheduler(beta_schedule="scaled_linear", beta_start=1e-4, beta_end=0.02,
                                        prediction_type="v_prediction", timestep_spacing="trailing", clip_sample=True)
    if layout == "pipeline":
        diffusers.DDIMPipeline(unet=unet, scheduler=scheduler).save_pretrained(tmp_path / "hf")
    else:
        unet.save_pretrained(tmp_path / "hf")
        scheduler.save_pretrained(tmp_path / "hf")
    run = difflab.load(tmp_path / "hf")
    assert run.config["diffusion"]["parameterization"] == "v" and run.config["diffusion"]["schedule"] == "quadratic"
    assert run.config["sample"]["sampler"] == "ddim"
    x = torch.randn(3, *SHAPE, generator=torch.Generator().manual_seed(2))
    t = torch.tensor([1, 500, 1000])
    with torch.no_grad():
        assert (run.model(x, t.float()) - unet(x, t - 1).sample).abs().max() < 1e-5
    # sampling: difflab's ddim on the imported model = diffusers' own DDIM loop
    scheduler.set_timesteps(10)
    x_T = torch.randn(4, *SHAPE, generator=torch.Generator().manual_seed(0))
    x = x_T.clone()
    with torch.no_grad():
        for k in scheduler.timesteps:
            x = scheduler.step(unet(x, k).sample, k, x, use_clipped_model_output=True).prev_sample
    mine = run.sample(4, sampler="ddim", steps=10, x_T=x_T)
    assert inner(mine.numpy()) > 0.3
    assert ((x / 2 + 0.5).clamp(0, 1) - mine).abs().max() < 1e-3


def test_foreign_class_conditional_model_needs_classes(tmp_path):
    unet = foreign_unet(num_class_embeds=4)
    diffusers.DDPMPipeline(unet=unet, scheduler=diffusers.DDPMScheduler()).save_pretrained(tmp_path / "hf")
    run = difflab.load(tmp_path / "hf")
    assert run.config["model"]["num_classes"] == 4 and run.config["sample"]["sampler"] == "ddpm"
    with pytest.raises(DifflabError, match="no null label"):
        run.sample(2, sampler="ddim", steps=2)
    x = run.sample(2, sampler="ddim", steps=2, classes=[1, 3])
    assert x.shape == (2, *SHAPE)


def test_round_trip_difflab_diffusers_difflab(tmp_path):
    """Exported, read back by difflab (through diffusers' UNet2DModel), exported again: same network, same files."""
    run = make_run(tmp_path / "run", "v", num_classes=3)
    first = fd.export(run, tmp_path / "hf")
    back = difflab.load(first)
    assert back.config["model"]["num_classes"] == 3 and back.config["data"]["name"] == "digits"
    ours = difflab.load(run)
    x = torch.randn(2, *SHAPE)
    t, y = torch.tensor([7.0, 900.0]), torch.tensor([3, 1])
    with torch.no_grad():
        assert (ours.model(x, t, y) - back.model(x, t, y)).abs().max() < 1e-5
    second = fd.export(first, tmp_path / "hf2")
    for name in ("unet/config.json", "scheduler/scheduler_config.json", "model_index.json"):
        assert json.loads((first / name).read_text()) == json.loads((second / name).read_text())


@pytest.mark.parametrize("case,match", [
    ("empty", "neither a difflab run"),
    ("conditional", "UNet2DConditionModel"),
    ("ldm", "also holds"),
    ("pickle", "pickle"),
    ("no-scheduler", "scheduler_config.json"),
    ("thresholding", "dynamic thresholding"),
    ("sigmoid", "'sigmoid' has no difflab equivalent"),
    ("trained-betas", "trained_betas"),
    ("corrupt", "truncated or corrupt"),
])
def test_bad_diffusers_folders_get_one_clear_sentence(tmp_path, case, match):
    folder = tmp_path / "hf"
    folder.mkdir()
    unet_config = {"_class_name": "UNet2DModel", "sample_size": 8, "in_channels": 1, "out_channels": 1}
    sched = {"_class_name": "DDPMScheduler", "beta_schedule": "linear"}
    if case != "empty":
        (folder / "config.json").write_text(json.dumps(unet_config))
        (folder / "diffusion_pytorch_model.safetensors").write_bytes(b"\0" * 64)
        if case != "no-scheduler":
            (folder / "scheduler_config.json").write_text(json.dumps(sched))
    if case == "conditional":
        (folder / "config.json").write_text(json.dumps({**unet_config, "_class_name": "UNet2DConditionModel"}))
    elif case == "ldm":
        (folder / "model_index.json").write_text(json.dumps({"_class_name": "LDMPipeline", "unet": ["diffusers", "UNet2DModel"],
                                                             "vqvae": ["diffusers", "VQModel"], "scheduler": ["diffusers", "DDIMScheduler"]}))
    elif case == "pickle":
        (folder / "diffusion_pytorch_model.safetensors").unlink()
        (folder / "diffusion_pytorch_model.bin").write_bytes(b"\0")
    elif case in ("thresholding", "sigmoid", "trained-betas"):
        extra = {"thresholding": {"thresholding": True}, "sigmoid": {"beta_schedule": "sigmoid"},
                 "trained-betas": {"trained_betas": [0.1, 0.2]}}[case]
        (folder / "scheduler_config.json").write_text(json.dumps({**sched, **extra}))
    with pytest.raises(DifflabError, match=match) as e:
        difflab.load(folder)
    assert "\n" not in str(e.value)


def test_cli_samples_a_diffusers_folder(tmp_path):
    unet = foreign_unet()
    diffusers.DDPMPipeline(unet=unet, scheduler=diffusers.DDPMScheduler()).save_pretrained(tmp_path / "hf")
    r = subprocess.run([sys.executable, "-m", "difflab", "sample", str(tmp_path / "hf"), "--num", "4", "--steps", "5",
                        "--sampler", "ddim", "--out", str(tmp_path / "s.png")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "s.png").stat().st_size > 0


# ------------------------------------------------------------------------------------------------------ ONNX
@pytest.mark.parametrize("num_classes", [None, 4])
def test_onnx_graph_and_numpy_sampler_match_difflab(tmp_path, num_classes):
    pytest.importorskip("onnxruntime", reason="the onnx extra is not installed: pip install 'difflab[onnx]'")
    import onnxruntime

    from difflab.formats import onnx as fo

    run = make_run(tmp_path / "run", "x0", num_classes=num_classes)
    out, gap = fo.export(run, tmp_path / "onnx")
    assert gap is not None and gap < 1e-4
    meta = json.loads((out / fo.META).read_text())
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        import onnx_sample
    finally:
        sys.path.pop(0)
    assert [int(t) for t in onnx_sample.trailing(1000, 7)] == [int(t) for t in samplers.discretize(schedules.get("linear"), 7, "trailing")]
    session = onnxruntime.InferenceSession(str(out / fo.GRAPH), providers=["CPUExecutionProvider"])
    x_T = np.random.default_rng(0).standard_normal((4, *SHAPE))
    labels = np.array([0, 1, 2, 3]) if num_classes else None
    theirs = onnx_sample.to_data(onnx_sample.ddim(session, meta, x_T, 10, labels), meta["normalization"])
    mine = difflab.load(run).sample(4, sampler="ddim", steps=10, x_T=torch.from_numpy(x_T).float(),
                                    classes=[0, 1, 2, 3] if num_classes else None)
    assert inner(mine.numpy()) > 0.3
    assert np.abs(theirs - mine.numpy()).max() < 1e-3


def test_onnx_sampler_script_runs_without_torch(tmp_path):
    pytest.importorskip("onnxruntime", reason="the onnx extra is not installed: pip install 'difflab[onnx]'")
    from difflab.formats import onnx as fo

    out, _ = fo.export(make_run(tmp_path / "run"), tmp_path / "onnx")
    script = (f"import sys, runpy; sys.modules['torch'] = None; "
              f"sys.argv = ['onnx_sample.py', {str(out)!r}, '--num', '4', '--steps', '5', '--out', {str(tmp_path / 'g.png')!r}]; "
              f"runpy.run_path({str(ROOT / 'examples' / 'onnx_sample.py')!r}, run_name='__main__')")
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "g.png").stat().st_size > 0


def test_onnx_export_refuses_continuous_schedules(tmp_path):
    from difflab.formats import onnx as fo

    run = make_run(tmp_path / "run", schedule="vp")
    with pytest.raises(DifflabError, match="continuous 'vp' schedule"):
        fo.export(run, tmp_path / "onnx")
    assert not (tmp_path / "onnx").exists()


# ----------------------------------------------------------------------------------------- any callable
def test_from_callable_samples_like_the_wrapped_oracle():
    from difflab.toy import GaussianMixture

    schedule = schedules.get("linear", 1000)
    oracle = GaussianMixture(torch.tensor([[1.0, 0.0], [-1.0, 0.5]]), 0.1).denoiser(schedule)
    x_T = torch.randn(200, 2, generator=torch.Generator().manual_seed(0))
    ref = samplers.sample(oracle, x_T.shape, sampler="dpmpp_2m", steps=10, x_T=x_T.clone())
    for time, fn in (("t", lambda x, t: oracle(x, t.double()).eps),
                     ("index", lambda x, k: oracle(x, k.double() + 1).eps)):
        den = from_callable(fn, schedule, "eps", time=time)
        got = samplers.sample(den, x_T.shape, sampler="dpmpp_2m", steps=10, x_T=x_T.clone())
        assert (got - ref).abs().max() < 1e-5, time
    seen = []
    den = from_callable(lambda x, s: seen.append(s) or torch.zeros_like(x), schedule, "eps", time="sigma")
    den(torch.zeros(3, 2), torch.tensor([1.0, 500.0, 1000.0]))
    expected = (schedule.sigma_t / schedule.alpha_t)[[1, 500, 1000]].float()
    assert torch.allclose(seen[0], expected, rtol=1e-6)


def test_from_callable_wraps_a_diffusers_unet_like_the_folder_import(tmp_path):
    unet = foreign_unet()
    scheduler = diffusers.DDPMScheduler(prediction_type="epsilon")
    diffusers.DDPMPipeline(unet=unet, scheduler=scheduler).save_pretrained(tmp_path / "hf")
    run = difflab.load(tmp_path / "hf")
    den = from_callable(lambda x, k: unet(x, k).sample, "linear", "eps", time="index", clip_x0=(-1, 1))
    x_T = torch.randn(2, *SHAPE, generator=torch.Generator().manual_seed(0))
    a = samplers.sample(den, x_T.shape, sampler="unipc", steps=6, x_T=x_T.clone())
    b = samplers.sample(run.denoiser, x_T.shape, sampler="unipc", steps=6, x_T=x_T.clone())
    assert (a - b).abs().max() < 1e-5


@pytest.mark.parametrize("kwargs,match", [({"time": "seconds"}, "time convention"),
                                          ({"fn": 3}, "needs a function"),
                                          ({"parameterization": "edm"}, "parameterization"),
                                          ({"fn": lambda x, t: x[:1]}, "shaped like its input")])
def test_from_callable_bad_input(kwargs, match):
    args = {"fn": lambda x, t: x, "schedule": "linear", **kwargs}
    with pytest.raises(DifflabError, match=match):
        den = from_callable(**args)
        den(torch.zeros(2, 2), torch.tensor([3.0, 4.0]))


# -------------------------------------------------------------------------- scheduler <-> sampler table
#: (diffusers scheduler, its options, difflab sampler, its options, the largest |difference| of 2,000 2-D samples
#: after 10 steps, or None where the two are NOT the same method — then the test shows they differ). The rows of the
#: table in docs/diffusers.md.
TABLE = [
    ("DDPMScheduler", {}, "ddpm", {"discretization": "leading"}, 1e-4),
    ("DDPMScheduler", {"timestep_spacing": "trailing"}, "ddpm", {"discretization": "trailing"}, 1e-4),
    ("DDPMScheduler", {"variance_type": "fixed_large"}, "ddpm", {"discretization": "leading", "variance": "beta"}, 1e-4),
    ("DDIMScheduler", {}, "ddim", {"discretization": "leading"}, 1e-4),
    ("DDIMScheduler", {"timestep_spacing": "trailing"}, "ddim", {"discretization": "trailing"}, 1e-4),
    ("DDIMScheduler", {"timestep_spacing": "linspace"}, "ddim", {"discretization": "linspace"}, None),
    ("EulerAncestralDiscreteScheduler", {"timestep_spacing": "trailing"}, "ddpm", {"discretization": "trailing"}, 1e-4),
    ("DPMSolverMultistepScheduler", {"timestep_spacing": "trailing"}, "dpmpp_2m", {"discretization": "trailing"}, 1e-4),
    ("DPMSolverMultistepScheduler", {"use_lu_lambdas": True}, "dpmpp_2m", {"discretization": "logsnr"}, 3e-3),
    ("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}, "dpmpp_2m", {"discretization": "karras"}, None),
    ("DPMSolverMultistepScheduler", {}, "dpmpp_2m", {"discretization": "linspace"}, None),
    ("DPMSolverMultistepScheduler", {"timestep_spacing": "trailing", "solver_order": 3}, "dpmpp_3m",
     {"discretization": "trailing"}, None),
    ("DPMSolverMultistepScheduler", {"timestep_spacing": "trailing", "algorithm_type": "sde-dpmsolver++"},
     "dpmpp_2m_sde", {"discretization": "trailing"}, 1e-4),
    ("EulerDiscreteScheduler", {}, "euler", {"discretization": "linspace"}, 1e-4),
    ("EulerDiscreteScheduler", {"timestep_spacing": "trailing"}, "euler", {"discretization": "trailing"}, 1e-4),
    ("EulerDiscreteScheduler", {"use_karras_sigmas": True}, "euler", {"discretization": "karras"}, None),
    ("HeunDiscreteScheduler", {"timestep_spacing": "trailing"}, "heun", {"discretization": "trailing"}, 1e-4),
    ("UniPCMultistepScheduler", {"timestep_spacing": "trailing"}, "unipc", {"discretization": "trailing"}, 1e-4),
    ("PNDMScheduler", {"timestep_spacing": "trailing", "skip_prk_steps": True}, "plms", {"discretization": "trailing"}, None),
]


def drive(scheduler, denoiser, x_T: torch.Tensor, steps: int, seed: int) -> torch.Tensor:
    """Run a diffusers scheduler as its pipelines do, the model at timestep k being the denoiser's ε̂ at t = k + 1."""
    scheduler.set_timesteps(steps)
    g = torch.Generator().manual_seed(seed)
    kw = {"generator": g} if "generator" in inspect.signature(scheduler.step).parameters else {}
    x = x_T.clone() * scheduler.init_noise_sigma
    for k in scheduler.timesteps:
        eps = denoiser(scheduler.scale_model_input(x, k), torch.tensor(float(k) + 1.0, dtype=torch.float64)).eps
        x = scheduler.step(eps, k, x, **kw).prev_sample
    return x


@pytest.mark.parametrize("name,extra,sampler,options,tolerance", TABLE,
                         ids=[f"{r[0]}-{'-'.join(f'{k}={v}' for k, v in r[1].items()) or 'default'}" for r in TABLE])
def test_scheduler_table_row(name, extra, sampler, options, tolerance):
    from difflab.data.toys import GAUSSIANS8_CENTRES, GAUSSIANS8_STD
    from difflab.toy import GaussianMixture

    schedule = schedules.get("linear", 1000)
    oracle = GaussianMixture(GAUSSIANS8_CENTRES.double(), GAUSSIANS8_STD).denoiser(schedule)
    scheduler = getattr(diffusers, name)(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4,
                                         beta_end=0.02, prediction_type="epsilon",
                                         **({"clip_sample": False} if name in ("DDPMScheduler", "DDIMScheduler") else {}),
                                         **extra)
    x_T = torch.randn(2000, 2, generator=torch.Generator().manual_seed(1))
    theirs = drive(scheduler, oracle, x_T, 10, seed=3)
    mine = samplers.sample(oracle, x_T.shape, sampler=sampler, steps=10, x_T=x_T.clone(),
                           generator=torch.Generator().manual_seed(3), **options)
    gap = float((theirs - mine).abs().max())
    if tolerance is None:
        assert gap > 1e-2, f"{name} {extra} now matches {sampler} {options} ({gap:.1e}): move it to the equivalents"
    else:
        assert gap < tolerance, gap


def test_core_and_diffusers_export_work_without_the_extras(tmp_path):
    """difflab imports, loads, samples and writes a diffusers folder with diffusers, onnx and onnxruntime absent; only
    reading a diffusers folder asks for its extra, in one sentence."""
    hf = fd.export("mnist", tmp_path / "hf")
    script = ("import sys\n"
              "for m in ('diffusers', 'onnx', 'onnxruntime'): sys.modules[m] = None\n"
              "import difflab\n"
              "from difflab.formats import diffusers as fd\n"
              "from difflab.errors import DifflabError\n"
              "difflab.load('mnist').sample(1, steps=2, classes=1)\n"
              f"fd.export('mnist', {str(tmp_path / 'again')!r})\n"
              "try:\n"
              f"    difflab.load({str(hf)!r})\n"
              "except DifflabError as e:\n"
              "    print(e)\n")
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "pip install 'difflab[diffusers]'" in r.stdout
    assert (tmp_path / "again" / "unet" / fd.WEIGHTS).is_file()
