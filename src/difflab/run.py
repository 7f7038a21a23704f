"""A trained run as a Python object: ``run = difflab.load(RUN_DIR)``; ``run.sample(...)``.

Samples come back in the data's own coordinates: toys in their raw coordinates, images as pixels
in [0, 1]. The model works in normalised coordinates (toys centred and scaled to unit standard
deviation, images mapped to [−1, 1]); the map between the two is stored in the run's
``config.json`` under ``normalization``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .data.normalization import Normalization  # noqa: F401 (re-exported)
from .denoiser import build_denoiser
from .plotting import save_samples  # noqa: F401 (re-exported)
from .errors import DifflabError

from .data_gaussian import FILE as GAUSSIAN_FILE


class Run:
    """A trained model with its schedule, config and normalisation (EMA weights by default); a latent
    run also holds the :class:`~difflab.latent.LatentCodec` that decodes its samples."""

    def __init__(self, path: Path, config: dict, model: torch.nn.Module, step: int, codec=None):
        self.path = path
        self.config = config
        self.model = model.eval()
        self.step = step
        self.codec = codec
        self.normalization = Normalization.from_config(config["normalization"])
        self.denoiser = build_denoiser(self.model, config)
        self.schedule = self.denoiser.schedule
        self.gaussian = _data_gaussian(path)

    @property
    def kind(self) -> str:
        return self.normalization.kind

    @property
    def shape(self) -> tuple:
        return self.normalization.shape

    @property
    def parameterization(self) -> str | None:
        """What the network predicts (``eps``, ``v``, ``x0``, ``consistency``, ...); None for a model without a
        diffusion section."""
        diffusion = self.config.get("diffusion")
        return diffusion.get("parameterization") if isinstance(diffusion, dict) else None

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, data={self.config['data']['name']!r}, step={self.step})"

    def gaussian_options(self, sampler: str, gaussian_start: float | None = None) -> dict:
        """The sampler options that start from the data's Gaussian at σ̃ = ``gaussian_start`` (0: off; None: the
        start recorded in the config's sample section when ``sampler`` is the config's, else off)."""
        defaults = self.config["sample"]
        if gaussian_start is None:
            gaussian_start = defaults.get("gaussian_start") if sampler == defaults["sampler"] else None
        if not gaussian_start:
            return {"gaussian_start": None}
        if self.gaussian is None:
            raise DifflabError(f"gaussian_start needs the data's Gaussian, and {str(self.path)!r} has no "
                               f"{GAUSSIAN_FILE}; fit one (difflab.data_gaussian.DataGaussian.fit) or set "
                               "gaussian_start to None.")
        if self.codec is not None:
            raise DifflabError("gaussian_start carries pixels; a latent run samples latents, so it does not apply.")
        return {"gaussian_start": gaussian_start, "gaussian": self.gaussian}

    def sample(self, num: int, sampler: str | None = None, steps: int | None = None, generator=None,
               x_T: torch.Tensor | None = None, progress: bool = False, callback=None, classes=None,
               guidance: str | None = None, scale: float = 0.0, compose: bool = False, classifier=None,
               prompts: str | list[str] | None = None, **options) -> torch.Tensor:
        """``num`` samples in data coordinates; defaults come from the config's ``sample`` section.

        For a class-conditional model: ``classes`` (an int or a list; sample i gets
        ``classes[i % len]``, or all of them with ``compose``) and ``guidance="cfg"`` with scale w
        (see :func:`difflab.guidance.conditional_denoiser`). For any image model:
        ``guidance="classifier"`` with ``classifier`` (a classifier run directory or a loaded
        :class:`~difflab.saved.ClassifierRun`) and scale s: Algorithm 1 of Dhariwal &
        Nichol 2021 (the mean shift) with the ``ddpm`` sampler, Algorithm 2 (the ε shift) with the others.
        For a text-conditioned model: ``prompts`` (a text or a list; sample i gets ``prompts[i % len]``), with
        ``guidance="cfg"`` towards them (the empty prompt being the null condition). A latent run samples
        latents and decodes them.
        """
        from .guidance import conditional_denoiser
        from .samplers import sample as sample_denoiser

        if isinstance(num, bool) or not isinstance(num, int) or num < 1:
            raise DifflabError(f"the number of samples must be a positive integer, got {num!r}.")
        defaults = self.config["sample"]
        sampler = defaults["sampler"] if sampler is None else sampler
        if sampler == "ddim" and "eta" not in options:
            options["eta"] = defaults["eta"]
        device = next(self.model.parameters()).device
        if isinstance(classes, int) and not isinstance(classes, bool):
            classes = [classes]
        network = classifier  # anything but None without guidance="classifier" is refused below
        if classifier is not None and guidance == "classifier":
            from .saved import ClassifierRun, load_classifier

            if not isinstance(classifier, ClassifierRun):
                classifier = load_classifier(classifier)
            classifier.check_fits(self.schedule, self.shape, self.config["normalization"])
            network = classifier.model.to(device)
        if prompts is not None:
            denoiser = self._prompted(num, prompts, guidance, scale, classes, device)
        else:
            denoiser = conditional_denoiser(self.denoiser, num, classes, guidance, scale, compose, classifier=network,
                                            ancestral=sampler == "ddpm")
        shape = self.shape if self.codec is None else self.codec.shape
        steps = defaults["steps"] if steps is None else steps
        options.update(self.gaussian_options(sampler, options.pop("gaussian_start", None)))
        if options.get("discretization") is None and "timesteps" not in options and sampler == defaults["sampler"] \
                and defaults.get("discretization"):
            options["discretization"] = defaults["discretization"]
        if options.get("discretization") == "tuned":  # times tuned for this run (difflab tune-steps; difflab.tuning)
            from .tuning import load as load_tuned

            options.pop("discretization")
            options["timesteps"] = load_tuned(self.path, sampler, steps)
        x = sample_denoiser(denoiser, (num, *shape), sampler=sampler, steps=steps,
                            generator=generator, x_T=x_T, device=device, progress=progress, callback=callback, **options)
        if self.codec is not None:
            x = self.codec.decode(x)
        return self.normalization.to_data(x)

    def _prompted(self, num: int, prompts, guidance, scale: float, classes, device):
        """The denoiser that draws sample i for ``prompts[i % len(prompts)]``, guided by CFG with w = ``scale``."""
        from .guidance import ClassifierFreeGuidance

        tokenizer = getattr(self.model, "tokenizer", None)
        if tokenizer is None:
            raise DifflabError(f"this model (type {self.config['model']['type']!r}) is not text-conditioned; prompts need "
                               "a text-unet run.")
        if classes:
            raise DifflabError("give prompts or classes, not both.")
        if guidance not in (None, "none", "cfg"):
            raise DifflabError(f"prompts are guided by classifier-free guidance (cfg), not {guidance!r}.")
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        if not prompts:
            raise DifflabError("the list of prompts is empty; give at least one.")
        ids = tokenizer.batch([prompts[i % len(prompts)] for i in range(num)], strict=True).to(device)
        if guidance == "cfg":
            return ClassifierFreeGuidance(self.denoiser, [ids], scale)
        return self.denoiser.with_labels(ids)

    def log_likelihood(self, x: torch.Tensor, rtol: float = 1e-5, atol: float = 1e-5, trace: str | None = None,
                       num_probes: int = 1, generator=None) -> tuple[torch.Tensor, int]:
        """Per-example likelihood of data ``x`` (data coordinates) by the probability-flow ODE:
        toys in nats, log p_data(x) = log p_model(z) − D ln(scale) for z = (x − shift)/scale; images in
        bits/dim after uniform dequantization. Returns (values, NFE). ``trace`` defaults to the exact
        trace for D <= 16 and Hutchinson's estimator above."""
        import math

        from .likelihood import bits_per_dim, log_likelihood

        if tuple(x.shape[1:]) != tuple(self.shape):
            raise DifflabError(f"data of shape {tuple(x.shape[1:])} do not match the model's {tuple(self.shape)}.")
        dims = math.prod(self.shape)
        trace = trace or ("exact" if dims <= 16 else "hutchinson")
        device = next(self.model.parameters()).device
        if self.kind == "image":
            x = dequantize(x, generator)
        z = self.normalization.to_model(x).to(device)
        logp, nfe = log_likelihood(self.denoiser, z, rtol=rtol, atol=atol, trace=trace, num_probes=num_probes,
                                   generator=generator)
        if self.kind == "image":
            return bits_per_dim(logp, dims, 256, self.normalization.scale), nfe
        return logp - dims * math.log(self.normalization.scale), nfe


    def variational_bound(self, x: torch.Tensor, generator=None, progress=None) -> dict[str, torch.Tensor]:
        """Every term of the variational bound of images ``x`` (data coordinates: pixels in [0, 1], 8-bit), in
        bits/dim, by :func:`difflab.variational_bound.full_bound` (Nichol & Dhariwal 2021, Eq. 4): one network
        evaluation per timestep, x_t drawn from q(x_t | x_0) with noise from ``generator``. A learned-variance
        network's variance is used; a fixed-variance one gets β̃_t (DDPM's "small" variance). x̂_0 is clipped
        to [−1, 1] when the run's sampling clips; a class-conditional network is evaluated at its null label,
        as in :meth:`log_likelihood`. ``progress``: None, or a callable called after each evaluation. Returns
        the float64 tensors of ``full_bound``: ``total_bpd``, ``prior_bpd`` (L_T), ``terms_bpd`` (B, T) with
        column t − 1 holding L_{t−1}, ``decoder_bpd`` (L_0) and ``eps_mse``."""
        from .variational_bound import full_bound

        if self.kind != "image":
            raise DifflabError("the variational bound is defined for 8-bit images, but this run models points; "
                               "use the probability-flow ODE likelihood (method ode).")
        if not getattr(self.schedule, "discrete", False):
            raise DifflabError(f"the variational bound needs a discrete schedule (t = 1..T), but this run uses "
                               f"{self.config['diffusion']['schedule']!r}; use the probability-flow ODE likelihood (method ode).")
        if tuple(x.shape[1:]) != tuple(self.shape):
            raise DifflabError(f"data of shape {tuple(x.shape[1:])} do not match the model's {tuple(self.shape)}.")
        denoiser = self.denoiser
        device = next(self.model.parameters()).device

        def predict(x_t: torch.Tensor, t: torch.Tensor):
            pred = denoiser.predict(x_t, t)
            if progress is not None:
                progress()
            if denoiser.parameterization == "eps":  # x̂_0 follows from ε̂ (the bound's own formula)
                return pred.eps, pred.v_raw
            return pred.eps, pred.v_raw, pred.x0

        z = self.normalization.to_model(x).to(device)
        return full_bound(self.schedule, z, predict, generator=generator, clip_x0=denoiser.clip_x0)


    def continuous_bound(self, x: torch.Tensor, generator=None, draws: int = 16) -> dict[str, torch.Tensor]:
        """The continuous-time variational bound of 8-bit images ``x`` (data coordinates, pixels in [0, 1]) under a
        learned schedule, in bits/dim per example (Kingma et al. 2021, Eq. 17 with the prior and reconstruction
        terms; :func:`difflab.continuous_bound.vlb_bits_per_dim`): ``total_bpd`` and its terms ``prior_bpd``,
        ``reconstruction_bpd``, ``diffusion_bpd``, each the mean of ``draws`` Monte Carlo estimates with antithetic
        times (a class-conditional network at its null label)."""
        import math

        from .continuous_bound import vlb_bits_per_dim
        from .objectives import antithetic_timesteps

        if self.config["diffusion"]["schedule"] != "learned":
            raise DifflabError("the continuous-time bound needs a learned schedule (diffusion.formulation: vdm).")
        if tuple(x.shape[1:]) != tuple(self.shape):
            raise DifflabError(f"data of shape {tuple(x.shape[1:])} do not match the model's {tuple(self.shape)}.")
        device = next(self.model.parameters()).device
        z = self.normalization.to_model(x).to(device)
        k = self.config["model"].get("num_classes")
        y = torch.full((z.shape[0],), k, device=device) if k else None
        dims = math.prod(self.shape) * math.log(2)
        sums = {name: torch.zeros(z.shape[0], dtype=torch.float64) for name in ("total", "prior", "reconstruction", "diffusion")}
        with torch.no_grad():
            for _ in range(draws):
                t = antithetic_timesteps(self.schedule, z.shape[0], generator)
                eps = torch.randn(z.shape, generator=generator).to(device)
                bpd, terms = vlb_bits_per_dim(self.denoiser, z, t, eps, y, variance=False)
                sums["total"] += bpd.double().cpu()
                for name, value in terms.items():
                    sums[name] += value.double().cpu() / dims
        return {f"{name}_bpd": v / draws for name, v in sums.items()}


def dequantize(x: torch.Tensor, generator=None, bins: int = 256) -> torch.Tensor:
    """Uniform dequantization of 8-bit images in [0, 1]: (k + u)/bins for pixel level k = round(255 x),
    u ~ U[0, 1) (Theis et al. 2016; Ho et al. 2020, Sec. 4.2)."""
    levels = torch.round(x * (bins - 1))
    u = torch.rand(x.shape, generator=generator, dtype=x.dtype)
    return (levels + u) / bins


def _data_gaussian(path: Path):
    """The :class:`~difflab.data_gaussian.DataGaussian` kept beside a model (``gaussian.safetensors``), or None."""
    from .data_gaussian import DataGaussian

    where = Path(path) / GAUSSIAN_FILE
    return DataGaussian.load(where) if where.is_file() else None


def load(run_dir: str | Path, weights: str = "ema", device: str | torch.device = "cpu") -> Run:
    """Load a model: the newest valid checkpoint of a run directory (``weights``: "ema" or
    "model"), an exported model directory, the name of a shipped pretrained model
    (:func:`difflab.pretrained.names`), or a diffusers UNet2DModel folder (:mod:`difflab.formats.diffusers`)."""
    from . import checkpoint
    from .denoiser import build_network
    from .formats import read_model

    run_dir, config, state, step, where = read_model(run_dir, weights)
    model = build_network(config)
    checkpoint.load_into(model, state, where)
    codec = None
    if "latent" in config:
        from .latent import load_codec
        codec = load_codec(config, device)
    return Run(run_dir, config, model.to(device), step, codec)
