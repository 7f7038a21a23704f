"""The formulation key (difflab.formulations): one config key chooses DDPM, EDM or flow matching, a preset can be
re-based on another formulation, what does not fit together is refused in one sentence; and minibatch optimal-
transport pairing of noise and data (Tong et al. 2024) against a brute-force search over every pairing."""

from __future__ import annotations

import itertools

import pytest
import torch

from difflab.config import resolve, with_defaults
from difflab.errors import DifflabError
from difflab.objectives import ot_pairing


@pytest.mark.parametrize("preset, formulation", [("digits", "ddpm"), ("digits-vp", "ddpm"), ("8gaussians-edm", "edm"),
                                                 ("mnist-flow", "flow"), ("8gaussians-ncsn", "ddpm")])
def test_every_preset_names_its_formulation(preset, formulation):
    assert resolve(preset)["diffusion"]["formulation"] == formulation


def test_a_saved_config_without_the_key_gets_the_one_its_keys_imply():
    """Runs written before the key existed (the shipped models among them) read as what they are."""
    for preset, want in (("mnist", "ddpm"), ("digits-edm", "edm"), ("digits-flow", "flow")):
        cfg = resolve(preset)
        del cfg["diffusion"]["formulation"]
        assert with_defaults(cfg)["diffusion"]["formulation"] == want


def test_a_preset_rebased_on_another_formulation():
    """``preset: mnist`` with ``formulation: flow`` is MNIST's U-Net and data trained by flow matching; keys the
    override gives itself still win."""
    mnist = resolve("mnist")
    flow = resolve({"preset": "mnist", "diffusion": {"formulation": "flow"}})
    assert flow["model"] == mnist["model"] and flow["data"] == mnist["data"]
    assert (flow["diffusion"]["schedule"], flow["diffusion"]["parameterization"]) == ("flow", "velocity")
    edm = resolve({"preset": "digits", "diffusion": {"formulation": "edm", "sigma_data": 0.7},
                   "train": {"steps": 7}})
    assert edm["diffusion"]["parameterization"] == "edm" and edm["diffusion"]["schedule"] == "ve"
    assert edm["diffusion"]["schedule_params"] == {"sigma_min": 0.002, "sigma_max": 80.0}
    assert edm["diffusion"]["sigma_data"] == 0.7 and edm["train"]["steps"] == 7
    assert edm["train"]["timestep_sampler"] == "lognormal" and edm["sample"]["sampler"] == "heun"
    x0_flow = resolve({"preset": "digits", "diffusion": {"formulation": "flow", "parameterization": "x0"}})
    assert x0_flow["diffusion"]["parameterization"] == "x0" and x0_flow["diffusion"]["schedule"] == "flow"
    # the same formulation as the preset's changes nothing
    assert resolve({"preset": "digits-edm", "diffusion": {"formulation": "edm"}}) == resolve("digits-edm")


def test_vdm_needs_images():
    with pytest.raises(DifflabError, match="bounds the likelihood of 8-bit images and needs an image model"):
        resolve({"preset": "8gaussians", "diffusion": {"formulation": "vdm"}})


def test_a_config_without_a_preset_is_laid_over_its_formulation():
    base = {"data": {"name": "8gaussians"}, "model": {"type": "mlp", "dim": 2}}
    cfg = resolve({**base, "diffusion": {"formulation": "edm"}})
    assert (cfg["diffusion"]["parameterization"], cfg["diffusion"]["schedule"]) == ("edm", "ve")
    assert resolve(base)["diffusion"]["formulation"] == "ddpm"


@pytest.mark.parametrize("diffusion, match", [
    ({"formulation": "edm", "parameterization": "eps"}, "'edm' trains a network predicting edm, not diffusion.parameterization 'eps'"),
    ({"formulation": "flow", "parameterization": "v"}, "'flow' trains a network predicting velocity or eps or x0, not"),
    ({"formulation": "ddpm", "parameterization": "edm"}, "for 'edm' set diffusion.formulation: edm"),
    ({"formulation": "edm", "schedule": "linear"}, "'edm' needs diffusion.schedule vp or subvp or ve or flow, got 'linear'"),
    ({"formulation": "ddpm", "schedule": "flow"}, "set diffusion.formulation: flow"),
    ({"formulation": "gan"}, "diffusion.formulation must be one of ddpm, edm, vdm, consistency, flow, got 'gan'"),
    ({"ot_pairing": True}, "diffusion.ot_pairing pairs noise with data for flow matching"),
    ({"formulation": "flow", "ot_pairing": "yes"}, "diffusion.ot_pairing must be true or false"),
    ({"formulation": "edm", "sigma_data": 0}, "diffusion.sigma_data must be a positive number"),
    ({"formulation": "vdm", "parameterization": "v"}, "'vdm' trains a network predicting eps, not diffusion.parameterization 'v'"),
    ({"loss": "vdm"}, "'vdm' needs diffusion.schedule learned, got 'cosine'"),
    ({"schedule": "learned"}, "diffusion.loss 'vdm' .* go together"),
    ({"formulation": "vdm", "loss": "simple"}, "go together"),
])
def test_what_does_not_fit_together_is_one_sentence(diffusion, match):
    with pytest.raises(DifflabError, match=match):
        resolve({"preset": "digits", "diffusion": diffusion})


def _brute_force_cost(x0, eps):
    """The least total squared distance over every pairing (n! of them)."""
    n = x0.shape[0]
    return min(float(((x0 - eps[list(p)]) ** 2).sum()) for p in itertools.permutations(range(n)))


def test_ot_pairing_is_the_optimal_permutation():
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        x0, eps = torch.randn(7, 2, 3, generator=g, dtype=torch.float64), torch.randn(7, 2, 3, generator=g, dtype=torch.float64)
        paired = ot_pairing(x0, eps)
        assert sorted(map(tuple, paired.flatten(1).tolist())) == sorted(map(tuple, eps.flatten(1).tolist()))  # a permutation
        assert float(((x0 - paired) ** 2).sum()) == pytest.approx(_brute_force_cost(x0, eps), rel=1e-12)


def test_ot_pairing_straightens_the_flow(train_toy, fraction_near_modes):
    """With noise paired to data by minibatch OT the learned paths are nearly straight (Tong et al. 2024, Sec. 3.2):
    two Euler steps of the flow ODE land near the modes as often as fifty do. Without the pairing two steps land
    between them (the same training gives 0.0 within 0.5 of a centre at 2 steps, 0.16 at 5, 0.63 at 50)."""
    import difflab

    run = difflab.load(train_toy("8gaussians-flow", 1500, diffusion={"ot_pairing": True}, train={"batch_size": 128}))
    many, two = fraction_near_modes(run, "ddim", 50), fraction_near_modes(run, "ddim", 2)
    assert many > 0.5 and two > 0.45 and two > many - 0.15, (many, two)
