import pytest
import torch

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def one_thread():
    """For modules of many tiny tensor operations (oracle-driven samplers): one thread, as OpenMP
    threads cost far more than they save on tensors this small, most of all on busy shared cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


TINY_TOY = """
preset: 8gaussians
model: {hidden: 32, depth: 2, time_dim: 16}
diffusion: {T: 100}
train: {steps: 40, batch_size: 64, log_every: 10, save_every: 10, sample_every: 0, num_samples: 32, keep: 3}
sample: {steps: 10}
data: {num: 2000}
"""

TINY_DIGITS = """
preset: digits
model: {base_channels: 16, channel_mult: [1, 2], num_res_blocks: 1, attention_resolutions: [4], groups: 8}
diffusion: {T: 100}
train: {steps: 6, batch_size: 16, log_every: 2, save_every: 3, sample_every: 3, num_samples: 4}
sample: {steps: 5}
data: {num: 64}
"""


@pytest.fixture
def tiny_toy_config(tmp_path):
    path = tmp_path / "tiny_toy.yaml"
    path.write_text(TINY_TOY)
    return path


@pytest.fixture
def tiny_digits_config(tmp_path):
    path = tmp_path / "tiny_digits.yaml"
    path.write_text(TINY_DIGITS)
    return path


@pytest.fixture
def train_toy(tmp_path):
    """train(preset, steps, name="run", **sections): train ``preset`` on 4,000 points of its toy for ``steps`` steps
    (one checkpoint, no grids, quiet) with the config ``sections`` laid over it; returns the run directory."""
    def train_run(preset: str, steps: int, name: str = "run", **sections):
        from difflab.config import resolve
        from difflab.training.diffusion import train

        train_section = {"steps": steps, "log_every": max(1, steps // 4), "save_every": steps, "sample_every": 0,
                         **sections.pop("train", {})}
        cfg = resolve({"preset": preset, "data": {"num": 4000}, "train": train_section, **sections})
        return train(cfg, tmp_path / name, progress=False, log=lambda *_: None)
    return train_run


@pytest.fixture
def fraction_near_modes():
    """fraction(run, sampler, steps): the share of 1,000 samples within 0.5 of a centre of the 8-Gaussians mixture
    (component std 0.1: a real sample lies that close with probability 1 − e^(−12.5) ≈ 1)."""
    def fraction(run, sampler: str, steps: int) -> float:
        from difflab.data.toys import GAUSSIANS8_CENTRES

        x = run.sample(1000, sampler=sampler, steps=steps, generator=torch.Generator().manual_seed(0))
        d = torch.cdist(x.double(), GAUSSIANS8_CENTRES.double()).min(1).values
        return float((d < 0.5).double().mean())
    return fraction
