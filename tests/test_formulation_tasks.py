"""Every formulation is an ordinary run: classifier-free guidance, every editing command, the likelihood and the
sample metrics take EDM, flow-matching, VDM and zero-terminal-SNR runs as they take a DDPM one (tiny models, a few
steps: these check that each path runs and keeps its contract, not quality)."""

from __future__ import annotations

import pytest
import torch

#: the digits presets of each formulation (zero terminal SNR is an option of the discrete preset, not a preset)
FORMULATIONS = {
    "edm": ("digits-edm", {}),
    "flow": ("digits-flow", {}),
    "vdm": ("digits-vdm", {}),
    "v-zero-snr": ("digits", {"parameterization": "v", "T": 100, "schedule_params": {"zero_terminal_snr": True}}),
}


@pytest.fixture(scope="module", params=sorted(FORMULATIONS))
def tiny_run(request, tmp_path_factory):
    from difflab.config import resolve
    from difflab.training.diffusion import train

    out = tmp_path_factory.mktemp(request.param) / "run"
    preset, diffusion = FORMULATIONS[request.param]
    cfg = resolve({"preset": preset, "model": {"base_channels": 16, "channel_mult": [1, 2], "num_res_blocks": 1,
                                                 "attention_resolutions": [], "groups": 8, "num_classes": 10},
                   "diffusion": diffusion, "data": {"num": 64},
                   "train": {"steps": 2, "batch_size": 8, "log_every": 1, "save_every": 2, "num_samples": 4}})
    train(cfg, out, progress=False, log=lambda *a: None)
    return request.param, out


def test_guidance_editing_and_likelihood_take_every_formulation(tiny_run, tmp_path):
    import json

    from difflab.cli.main import main
    from difflab.data import load_dataset
    from difflab.tasks.images import read_image, write_images

    name, run = tiny_run[0], str(tiny_run[1])
    digits = load_dataset("digits", num=2).data
    write_images(digits[:1], tmp_path / "a.png")
    write_images(digits[1:2], tmp_path / "b.png")
    commands = [
        ["sample", run, "--num", "4", "--steps", "4", "--class", "3", "--guidance", "cfg", "--scale", "2",
         "--out", str(tmp_path / "s.npz")],
        ["inpaint", run, "--image", str(tmp_path / "a.png"), "--mask", "right", "--steps", "5", "--out", str(tmp_path / "i.png")],
        ["inpaint", run, "--image", str(tmp_path / "a.png"), "--mask", "bottom", "--method", "repaint", "--steps", "4",
         "--jump", "2", "--repeats", "2", "--out", str(tmp_path / "r.png")],
        ["edit", run, "--image", str(tmp_path / "a.png"), "--strength", "0.3", "--steps", "5", "--out", str(tmp_path / "e.png")],
        ["interpolate", run, "--image", str(tmp_path / "a.png"), "--image2", str(tmp_path / "b.png"), "--num", "3",
         "--steps", "5", "--out", str(tmp_path / "p.npz")],
        ["denoise", run, "--image", str(tmp_path / "a.png"), "--noise-std", "0.1", "--steps", "5", "--out", str(tmp_path / "d.png")],
        ["trajectory", run, "--num", "2", "--steps", "4", "--out", str(tmp_path / "t.png")],
        ["likelihood", run, "--num", "8", "--method", "vlb" if name in ("vdm", "v-zero-snr") else "ode",
         "--rtol", "1e-3", "--atol", "1e-3", "--out", str(tmp_path / "l.json")],
    ]
    for argv in commands:
        assert main(argv) == 0, argv
    samples = read_image(tmp_path / "s.npz")
    assert samples.shape == (4, 1, 8, 8) and torch.isfinite(samples).all()
    # replacement inpainting keeps the known half exactly (Song et al. 2021, Appx. I)
    assert torch.equal(read_image(tmp_path / "i.png")[..., :4], read_image(tmp_path / "a.png")[..., :4])
    assert read_image(tmp_path / "p.npz").shape == (3, 1, 8, 8)
    bpd = json.loads((tmp_path / "l.json").read_text())["mean"]
    assert 0 < bpd < 30, bpd
