"""Editing tasks (difflab.tasks) against independent references: the exact Gaussian-mixture oracle on 4x4
"images", float64 recomputation of the schedule, and the paper's counting of RePaint's schedule."""

import math

import numpy as np
import pytest
import torch

from difflab import schedules
from difflab.denoiser import Prediction
from difflab.errors import DifflabError
from difflab.tasks import denoise, ilvr, inpaint, interpolate, sdedit, superres, trajectory
from difflab.tasks._common import check_image, sample_between, timesteps_from
from difflab.toy import GaussianMixture

pytestmark = pytest.mark.usefixtures("one_thread")
SHAPE = (1, 4, 4)
D = 16


class ImageOracle:
    """The mixture oracle on (B, 1, 4, 4) images (flattened to 16 dimensions)."""

    def __init__(self, mixture, schedule):
        self.inner, self.schedule = mixture.denoiser(schedule), schedule

    def __call__(self, x, t):
        p = self.inner(x.flatten(1), t)
        return Prediction(eps=p.eps.reshape(x.shape), x0=p.x0.reshape(x.shape))


@pytest.fixture(scope="module")
def mixture():
    """Two well separated classes: every pixel near +0.6 or every pixel near -0.6."""
    return GaussianMixture(torch.stack([torch.full((D,), 0.6), torch.full((D,), -0.6)]), 0.15)


@pytest.fixture(scope="module")
def schedule():
    return schedules.get("cosine", 1000)


@pytest.fixture(scope="module")
def oracle(mixture, schedule):
    return ImageOracle(mixture, schedule)


@pytest.fixture(scope="module")
def images(mixture):
    x = mixture.sample(40, torch.Generator().manual_seed(0)).float().reshape(40, *SHAPE)
    return x, x.mean((1, 2, 3)) > 0


def gen(seed=1):
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------------------------------------- inpainting


@pytest.mark.parametrize("method,options", [("replacement", {"sampler": "ddpm"}), ("replacement", {"sampler": "ddim"}),
                                            ("replacement", {"sampler": "pc"}),
                                            ("repaint", {"sampler": "ddpm", "jump": 5, "repeats": 3})])
def test_inpainting_keeps_known_pixels_and_completes_to_the_right_component(oracle, images, method, options):
    x, positive = images
    mask = inpaint.preset_mask("right", SHAPE)
    out = inpaint.inpaint(oracle, x, mask, method=method, steps=40, generator=gen(), **options)
    assert torch.equal(out[..., :2], x[..., :2])  # the known (left) half, bit for bit
    # the posterior of the hidden half given the known half puts it in the same component (±0.6 per pixel)
    hidden = out[..., 2:]
    assert ((hidden.mean((1, 2, 3)) > 0) == positive).float().mean() >= 0.9
    assert (hidden.abs().mean() - 0.6).abs() < 0.15
    assert not torch.equal(out[..., 2:], x[..., 2:])


def test_replacement_known_region_is_a_fresh_forward_draw_at_every_step(oracle, images, schedule):
    """With DDIM the known pixels of x_s are α_s x_0 + σ_s z for fresh z (Song et al. 2021, Appx. I.2)."""
    x, _ = images
    x = x[:1].expand(400, *SHAPE).contiguous()
    mask = inpaint.preset_mask("bottom", SHAPE)
    states = {}

    def keep(i, t, x_t, pred):
        states[t] = x_t.clone()

    from difflab.samplers import sample
    sample(inpaint.masked(oracle, x, mask[None], "ddim", gen()), tuple(x.shape), sampler="ddim", steps=10, generator=gen(),
           callback=keep)
    t = sorted(states)[len(states) // 2]
    a, s = float(schedule.alpha(torch.tensor(t))), float(schedule.sigma(torch.tensor(t)))
    noise = (states[t][..., :2, :] - a * x[..., :2, :]) / s
    assert abs(float(noise.mean())) < 0.05 and abs(float(noise.std()) - 1) < 0.05


def test_masks_from_presets_boxes_and_pngs(tmp_path):
    m = inpaint.mask_from_spec("1,0,3,2", SHAPE)
    expect = torch.ones(SHAPE)
    expect[0, 0:2, 1:3] = 0
    assert torch.equal(m, expect)
    assert inpaint.mask_from_spec("bottom", SHAPE)[0, 2:].sum() == 0 and inpaint.mask_from_spec("bottom", SHAPE)[0, :2].min() == 1
    from PIL import Image
    a = np.zeros((4, 4), np.uint8)
    a[:, :1] = 255
    Image.fromarray(a).save(tmp_path / "m.png")
    assert torch.equal(inpaint.mask_from_spec(str(tmp_path / "m.png"), SHAPE)[0, :, 0], torch.ones(4))
    assert inpaint.mask_from_spec(str(tmp_path / "m.png"), SHAPE)[0, :, 1:].sum() == 0
    Image.fromarray(np.zeros((5, 4), np.uint8)).save(tmp_path / "wrong.png")
    with pytest.raises(DifflabError, match="wrong.png.*4x5 pixels"):
        inpaint.mask_from_spec(str(tmp_path / "wrong.png"), SHAPE)


def test_bad_masks_are_refused(oracle, images):
    x, _ = images
    with pytest.raises(DifflabError, match="mask has shape"):
        inpaint.replacement(oracle, x, torch.ones(1, 5, 5))
    with pytest.raises(DifflabError, match="only 0"):
        inpaint.replacement(oracle, x, torch.full(SHAPE, 0.5))
    for spec, msg in (("0,0,9,2", "must satisfy"), ("1,2,3", "preset"), ("diagonal", "unknown mask preset")):
        with pytest.raises(DifflabError, match=msg):
            inpaint.mask_from_spec(spec, SHAPE)
    with pytest.raises(DifflabError, match="RePaint descends"):
        inpaint.repaint(oracle, x, inpaint.preset_mask("right", SHAPE), sampler="heun")


def test_repaint_schedule_counts_as_in_the_paper():
    """n steps down; at each multiple k of j with k + j <= n, r - 1 extra round trips of j up and j down."""
    for n, j, r in ((10, 2, 3), (50, 5, 5), (7, 3, 2), (6, 1, 1)):
        path = inpaint.repaint_schedule(n, j, r)
        assert path[0] == n and path[-1] == 0
        assert all(abs(b - a) == 1 for a, b in zip(path, path[1:]))
        jumps = len(range(0, n - j + 1, j))
        assert len(path) - 1 == n + 2 * j * (r - 1) * jumps
        ups = sum(b > a for a, b in zip(path, path[1:]))
        assert ups == j * (r - 1) * jumps


def test_renoise_matches_the_forward_transition(schedule):
    x = torch.full((20000, 1), 0.7, dtype=torch.float64)
    z = torch.randn(x.shape, generator=gen(3), dtype=torch.float64)
    out = inpaint.renoise(schedule, x, 300, 500, z)
    ab = torch.cumprod(1 - schedule.betas[1:], 0)  # ᾱ_1..ᾱ_T recomputed from the betas
    ratio = ab[499] / ab[299]
    assert abs(float(out.mean()) - 0.7 * math.sqrt(ratio)) < 0.02
    assert abs(float(out.var()) - (1 - ratio)) < 0.02


def test_sample_between_stops_at_the_asked_time(oracle, images):
    x, _ = images
    ts = timesteps_from(oracle.schedule, 600, 20)
    seen = []
    out = sample_between(lambda_denoiser(oracle, seen), x, ts[:5], int(ts[4]), "ddim")
    assert seen == [int(t) for t in ts[:4]]  # no evaluation at the stop time
    full = []
    from difflab.samplers import get
    get("ddim")(oracle, x, ts[:5], callback=lambda i, t, xt, p: full.append(xt.clone()))
    assert torch.equal(out, full[4])
    with pytest.raises(DifflabError, match="cannot stop"):
        sample_between(oracle, x, ts, int(ts[3]), "heun")


def lambda_denoiser(inner, seen):
    class Spy:
        schedule = inner.schedule

        def __call__(self, x, t):
            seen.append(int(t))
            return inner(x, t)
    return Spy()


# ---------------------------------------------------------------------------------------------- SDEdit


def test_sdedit_returns_the_guide_as_t0_goes_to_zero_and_drifts_with_t0(oracle, images):
    x, _ = images
    assert torch.equal(sdedit.sdedit(oracle, x, 1e-4, generator=gen()), x)
    dist = [float((sdedit.sdedit(oracle, x, s, generator=gen()) - x).pow(2).mean().sqrt()) for s in (0.002, 0.1, 0.5, 1.0)]
    assert dist[0] < 0.02  # two steps of noise: the exact denoiser gives the guide back to O(σ_2)
    assert dist == sorted(dist) and dist[-1] > 0.5  # at t0 = 1 a fresh sample, unrelated to the guide


def test_sdedit_refuses_strength_outside_the_unit_interval(oracle, images):
    for bad in (0, -0.1, 1.5, float("nan"), True):
        with pytest.raises(DifflabError, match="strength"):
            sdedit.sdedit(oracle, images[0], bad)


# ---------------------------------------------------------------------------------------------- ILVR and SR3


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_ilvr_output_has_the_given_low_frequencies(oracle, images, sampler):
    x, positive = images
    low = torch.nn.functional.avg_pool2d(x, 2)
    out = ilvr.ilvr(oracle, low, 2, sampler=sampler, steps=30, generator=gen())
    assert torch.allclose(torch.nn.functional.avg_pool2d(out, 2), low, atol=1e-5)
    assert ((out.mean((1, 2, 3)) > 0) == positive).all()
    assert not torch.allclose(out, ilvr.low_pass(out, 2))  # detail was added inside the blocks


def test_low_pass_is_a_projection():
    x = torch.randn(3, 1, 8, 8, generator=gen())
    p = ilvr.low_pass(x, 2)
    assert torch.allclose(ilvr.low_pass(p, 2), p)
    assert abs(float(((x - p) * p).sum())) < 1e-4  # orthogonal


def test_sr3_conditioning_and_unet_cond_channels():
    from difflab.models import build_model

    x = torch.rand(2, 1, 8, 8, generator=gen())
    c = superres.condition(x, 2)
    assert torch.allclose(superres.low_res(c, 2), superres.low_res(x, 2), atol=0.1)
    ref = torch.nn.functional.interpolate(x.reshape(2, 1, 4, 2, 4, 2).mean((3, 5)), scale_factor=2, mode="bicubic")
    assert torch.allclose(c, ref, atol=1e-6)
    net = build_model({"type": "unet", "image_size": 8, "base_channels": 8, "channel_mult": [1, 2], "num_res_blocks": 1,
                       "attention_resolutions": [], "groups": 4, "cond_channels": 1})
    torch.nn.init.normal_(net.conv_out.weight)
    t = torch.tensor([10.0, 20.0])
    assert not torch.allclose(net(x, t, cond=c), net(x, t, cond=torch.zeros_like(c)))
    with pytest.raises(DifflabError, match="conditioned on an image"):
        net(x, t)
    with pytest.raises(DifflabError, match="shape"):
        net(x, t, cond=c[:, :, :4])
    assert abs(float(superres.psnr(torch.zeros(1, 1, 2, 2), torch.full((1, 1, 2, 2), 0.1))) - 20.0) < 1e-5


def test_sr_config_is_checked():
    from difflab.config import resolve

    cfg = resolve("mnist-sr")
    assert cfg["data"]["low_res_factor"] == 2 and cfg["model"]["cond_channels"] == 1
    with pytest.raises(DifflabError, match="cond_channels"):
        resolve({"preset": "mnist-sr", "model": {"cond_channels": 0}})
    with pytest.raises(DifflabError, match="low_res_factor"):
        resolve({"preset": "mnist", "model": {"cond_channels": 1}})
    with pytest.raises(DifflabError, match="low_res_factor must be"):
        resolve({"preset": "mnist-sr", "data": {"low_res_factor": 1}})


# ---------------------------------------------------------------------------------------------- interpolation


def test_ddim_inversion_and_sampling_return_the_endpoints(oracle, images):
    x, _ = images
    out = interpolate.ddim_interpolate(oracle, x[:4], x[4:8], [0, 0.5, 1], steps=100, fixed_point_iters=3)
    assert out.shape == (3, 4, *SHAPE)
    assert torch.allclose(out[0], x[:4], atol=2e-3) and torch.allclose(out[2], x[4:8], atol=2e-3)
    assert not torch.allclose(out[1], x[:4], atol=0.05)


def test_slerp_against_the_closed_form():
    a, b = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 2.0]])
    mid = interpolate.slerp(a, b, 0.5)  # θ = 90°: (sin 45° a + sin 45° b)/sin 90°
    assert torch.allclose(mid, torch.tensor([[math.sqrt(0.5), 2 * math.sqrt(0.5)]]))
    assert torch.equal(interpolate.slerp(a, b, 0), a) and torch.equal(interpolate.slerp(a, b, 1), b)
    with pytest.raises(DifflabError, match="λ"):
        interpolate.slerp(a, b, 1.5)


def test_ddpm_interpolation_grid(oracle, images):
    x, positive = images
    i, j = int(torch.nonzero(positive)[0]), int(torch.nonzero(~positive)[0])
    out = interpolate.ddpm_interpolate(oracle, x[i:i + 1], x[j:j + 1], [0, 1], t=2, steps=1000, seed=0)
    assert torch.allclose(out[0, 0], x[i], atol=0.03) and torch.allclose(out[1, 0], x[j], atol=0.03)
    far = interpolate.ddpm_interpolate(oracle, x[i:i + 1], x[j:j + 1], [0, 0.5, 1], t=900, steps=50, seed=0)
    assert far.shape == (3, 1, *SHAPE)


# ---------------------------------------------------------------------------------------------- denoising


def _reference_step(betas: list[float], noise_std: float) -> int:
    """Direct float64 search: the t in 1..T minimising |log(σ_t/α_t) − log s|, ᾱ_t = Π (1 − β)."""
    best, best_t, ab = float("inf"), None, 1.0
    for t, beta in enumerate(betas, start=1):
        ab *= 1.0 - beta
        gap = abs(0.5 * math.log((1 - ab) / ab) - math.log(noise_std))
        if gap < best:
            best, best_t = gap, t
    return best_t


@pytest.mark.parametrize("name", ["cosine", "linear"])
def test_start_step_matches_the_noise_level(name):
    sched = schedules.get(name, 1000)
    betas = sched.betas[1:].tolist()
    for s in (0.01, 0.05, 0.2, 0.6, 1.0, 3.0, 20.0):
        assert denoise.matching_step(sched, s) == _reference_step(betas, s)
    top = math.sqrt((1 - sched.alpha_bar[-1].item()) / sched.alpha_bar[-1].item())
    with pytest.raises(DifflabError, match="above this schedule's largest"):
        denoise.matching_step(sched, top * 1.01)
    for bad in (0, -1, float("inf"), "0.1"):
        with pytest.raises(DifflabError, match="noise level"):
            denoise.matching_step(sched, bad)
    assert denoise.data_to_model_std(0.1, 0.5) == pytest.approx(0.2)


def test_denoising_starts_at_the_matching_step_and_reduces_the_error(oracle, images, schedule):
    x, _ = images
    noisy = x + 0.3 * torch.randn(x.shape, generator=gen(4))
    seen = []
    out = denoise.denoise(lambda_denoiser(oracle, seen), noisy, 0.3, steps=50)
    assert seen[0] == _reference_step(schedule.betas[1:].tolist(), 0.3)
    assert float((out - x).pow(2).mean()) < 0.4 * float((noisy - x).pow(2).mean())


# ---------------------------------------------------------------------------------------------- trajectories


def test_trajectory_records_every_step_and_ends_at_the_sample(oracle):
    from difflab.samplers import sample

    traj = trajectory.record(oracle, (3, *SHAPE), sampler="ddpm", steps=20, generator=gen(5))
    assert traj.x_t.shape == (21, 3, *SHAPE) and traj.x0.shape == (20, 3, *SHAPE) and len(traj.times) == 20
    assert torch.equal(traj.x_t[-1], sample(oracle, (3, *SHAPE), sampler="ddpm", steps=20, generator=gen(5)))
    assert float(traj.x_t[0].std()) > 0.8 and float(traj.x_t[-1].abs().mean()) == pytest.approx(0.6, abs=0.15)


def test_samples_sharing_a_late_x_t_agree_more(oracle):
    x_T = trajectory.start_noise(oracle, (1, *SHAPE), gen(0))
    times, rows = trajectory.shared_rows(oracle, x_T, 8, [0, 18], steps=20)
    early, late = (float(r.std(0).mean()) for r in rows)
    assert times[0] > times[1] and late < 0.5 * early


def test_trajectory_pictures(oracle, tmp_path):
    traj = trajectory.record(oracle, (2, *SHAPE), steps=6, generator=gen())
    to_data = lambda z: (z * 0.5 + 0.5).clamp(0, 1)  # noqa: E731
    trajectory.save_grid(traj, tmp_path / "t.png", to_data, count=4)
    trajectory.save_animation(traj, tmp_path / "t.gif", to_data)
    from PIL import Image
    with Image.open(tmp_path / "t.gif") as im:
        assert im.n_frames == len(traj.times) + 1  # every step, then the held final samples (merged into one)
    trajectory.save_animation(traj, tmp_path / "few.gif", to_data, max_frames=3)
    with Image.open(tmp_path / "few.gif") as im:
        assert im.n_frames == 3 + 1  # the first, middle and last steps
    assert (tmp_path / "t.png").stat().st_size > 0
    with pytest.raises(DifflabError, match="max_frames"):
        trajectory.save_animation(traj, tmp_path / "bad.gif", to_data, max_frames=1)


# ---------------------------------------------------------------------------------------------- inputs and the CLI


def test_images_of_the_wrong_size_are_refused(tmp_path):
    with pytest.raises(DifflabError, match="'the guide' has shape|the guide has shape"):
        check_image(torch.zeros(2, 1, 5, 5), SHAPE, "the guide")
    with pytest.raises(DifflabError, match="shape"):
        check_image(torch.zeros(2, 3, 4, 4), SHAPE, "the guide")
    from difflab.tasks.images import read_image, write_images
    x = torch.rand(1, 1, 4, 4, generator=gen())
    write_images(x, tmp_path / "a.png")
    assert torch.allclose(read_image(tmp_path / "a.png"), x, atol=0.5 / 255 + 1e-6)
    np.savez(tmp_path / "bad.npz", images=np.full((1, 4, 4), 2.0, np.float32))
    with pytest.raises(DifflabError, match=r"in \[0, 1\]"):
        read_image(tmp_path / "bad.npz")
    with pytest.raises(DifflabError, match="does not exist"):
        read_image(tmp_path / "missing.png")
    for name, content in (("cut.npz", b"PK\x03\x04junk"), ("text.npz", b"not a zip"), ("text.png", b"not a png")):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(DifflabError, match=name):
            read_image(tmp_path / name)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from difflab.config import resolve
    from difflab.training.diffusion import train

    out = tmp_path_factory.mktemp("tasks") / "run"
    cfg = resolve({"preset": "digits", "model": {"base_channels": 16, "channel_mult": [1, 2], "num_res_blocks": 1,
                                                 "attention_resolutions": [], "groups": 8},
                   "diffusion": {"T": 100}, "data": {"num": 64},
                   "train": {"steps": 2, "batch_size": 8, "log_every": 1, "save_every": 2, "num_samples": 4}})
    train(cfg, out, progress=False, log=lambda *a: None)
    return out


def test_cli_commands_write_outputs_and_refuse_bad_input(tiny_run, tmp_path, capsys):
    from difflab.cli.main import main
    from difflab.data import load_dataset
    from difflab.tasks.images import read_image, write_images

    digits = load_dataset("digits", num=2).data
    write_images(digits[:1], tmp_path / "a.png")
    write_images(digits[1:2], tmp_path / "b.png")
    write_images(superres.low_res(digits[:1], 2), tmp_path / "low.png")
    run = str(tiny_run)
    ok = [["inpaint", run, "--image", str(tmp_path / "a.png"), "--mask", "right", "--steps", "5", "--out", str(tmp_path / "i.png")],
          ["inpaint", run, "--image", str(tmp_path / "a.png"), "--mask", "bottom", "--method", "repaint", "--steps", "4",
           "--jump", "2", "--repeats", "2", "--out", str(tmp_path / "r.npz")],
          ["edit", run, "--image", str(tmp_path / "a.png"), "--strength", "0.3", "--steps", "5", "--out", str(tmp_path / "e.png")],
          ["upscale", run, "--method", "ilvr", "--image", str(tmp_path / "low.png"), "--steps", "5", "--out", str(tmp_path / "u.png")],
          ["interpolate", run, "--image", str(tmp_path / "a.png"), "--image2", str(tmp_path / "b.png"), "--num", "3",
           "--steps", "5", "--out", str(tmp_path / "p.png")],
          ["interpolate", run, "--method", "ddpm", "--t", "0.3,0.6", "--image", str(tmp_path / "a.png"), "--image2",
           str(tmp_path / "b.png"), "--num", "3", "--steps", "5", "--out", str(tmp_path / "q.npz")],
          ["denoise", run, "--image", str(tmp_path / "a.png"), "--noise-std", "0.1", "--steps", "5", "--out", str(tmp_path / "d.png")],
          ["trajectory", run, "--num", "2", "--steps", "4", "--out", str(tmp_path / "t.png"), "--gif", str(tmp_path / "t.gif")]]
    for argv in ok:
        assert main(argv) == 0, argv
    inpainted = read_image(tmp_path / "i.png")
    assert torch.equal(inpainted[..., :4], read_image(tmp_path / "a.png")[..., :4])
    assert read_image(tmp_path / "q.npz").shape == (6, 1, 8, 8)
    capsys.readouterr()
    bad = [(["inpaint", run, "--image", str(tmp_path / "low.png"), "--mask", "right", "--out", str(tmp_path / "x.png")], "--image file"),
           (["inpaint", run, "--image", str(tmp_path / "a.png"), "--mask", str(tmp_path / "low.png"), "--out", str(tmp_path / "x.png")], "mask"),
           (["edit", run, "--image", str(tmp_path / "a.png"), "--strength", "1.5", "--out", str(tmp_path / "x.png")], "strength"),
           (["denoise", run, "--image", str(tmp_path / "a.png"), "--noise-std", "1e6", "--out", str(tmp_path / "x.png")], "noise level"),
           (["upscale", run, "--image", str(tmp_path / "low.png"), "--out", str(tmp_path / "x.png")], "not a super-resolution model"),
           (["edit", run, "--image", str(tmp_path / "a.png"), "--strength", "0.5", "--out", str(tmp_path / "x.jpg")], ".png or .npz")]
    for argv, words in bad:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert words in err and err.count("\n") == 1, err
    assert not (tmp_path / "x.png").exists()


def test_sr3_trains_and_upscales(tmp_path):
    from difflab.run import load
    from difflab.training.diffusion import train
    from difflab.config import resolve

    cfg = resolve({"preset": "mnist-sr", "model": {"base_channels": 8, "groups": 4}, "diffusion": {"T": 50},
                   "data": {"num": 32}, "train": {"steps": 2, "batch_size": 8, "log_every": 1, "num_samples": 4},
                   "sample": {"steps": 2}})
    train(cfg, tmp_path / "sr", progress=False, log=lambda *a: None)
    run = load(tmp_path / "sr")
    low = torch.rand(3, 1, 14, 14, generator=gen())
    out = superres.sr3(run, low, steps=3, generator=gen())
    assert out.shape == (3, 1, 28, 28) and out.min() >= 0 and out.max() <= 1
    with pytest.raises(DifflabError, match="low-resolution input"):
        superres.sr3(run, torch.rand(1, 1, 28, 28), steps=2)
    bicubic = superres.upsample(low, 2).clamp(0, 1)
    assert torch.allclose(superres.sr3(run, low, steps=3, start=1e-3), bicubic, atol=1e-6)  # t0 -> 0: the bicubic image
    assert superres.sr3(run, low, steps=3, start=0.5, generator=gen()).shape == (3, 1, 28, 28)
    with pytest.raises(DifflabError, match="strength"):
        superres.sr3(run, low, start=0)
