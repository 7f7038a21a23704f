"""``difflab train``: train a model from a preset or a YAML/TOML config."""

from __future__ import annotations

import argparse

from ._args import check_resumable, integer, training_arguments

NAME = "train"
HELP = "train a model from a preset or a YAML/TOML config"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..config import PRESETS
    from ..formulations import describe
    from ..objectives import WEIGHTINGS
    from ..training.ebm import PRESETS as EBM_PRESETS

    training_arguments(p, f"a preset ({', '.join(PRESETS)}; energy-based: {', '.join(EBM_PRESETS)}) or a "
                          ".yaml/.toml file")
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = ("formulations (config key diffusion.formulation; a preset or config may name one and override any key):\n"
                f"{describe()}\n"
                f"loss weightings (diffusion.weighting): {', '.join(WEIGHTINGS)} — min-SNR-γ (Hang et al. 2023) and its soft\n"
                "  form (Crowson et al. 2024), EDM's λ(σ) (Karras et al. 2022), the likelihood weight (Kingma et al. 2021;\n"
                "  Song et al. 2021), each stated for the network's own parameterization.\n"
                "example: a file with 'preset: mnist' and 'diffusion: {formulation: flow}' trains MNIST by flow matching.\n"
                "energy-based models (an -ebm or -rbm preset, or a file with 'kind: ebm'): ebm.objective cd (contrastive\n"
                "  divergence with persistent chains), exact, sliced, sliced-vr or denoising score matching.")
    p.add_argument("--precision", choices=["fp32", "bf16"], default=None, help="fp32, or bf16 autocast (default: the run's, fp32)")
    p.add_argument("--grad-accum", type=integer, default=None, metavar="K",
                       help="split each batch into K micro-batches whose gradients add up to one step")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None, help="torch.compile the model")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                       help="channels-last memory format for image models")
    p.add_argument("--log-every", type=integer, default=None, metavar="N", help="log the mean loss every N steps (train.log_every)")
    p.add_argument("--sample-every", type=integer, default=None, metavar="N", help="sample grid every N steps, 0: at the end (train.sample_every)")
    p.add_argument("--save-every", type=integer, default=None, metavar="N", help="checkpoint every N steps, 0: at the end (train.save_every)")


def execute(a) -> None:
    """``difflab train``; under torchrun every process runs it (rank 0 alone prints errors)."""
    from pathlib import Path

    from ..config import load_file, resolve
    from ..errors import DifflabError, PeerLost
    from ..training.diffusion import split_run_options, train
    from ..training.distributed import from_env

    try:
        check_resumable(a)
        if _energy_based(a):
            from ..training.ebm import resolve as resolve_ebm
            from ..training.ebm import train_ebm

            for flag, value in (("--precision", a.precision), ("--grad-accum", a.grad_accum), ("--compile", a.compile),
                                ("--channels-last", a.channels_last)):
                if value is not None:
                    raise DifflabError(f"{flag} is not an option of energy-based training (it runs in float32, in one "
                                       "process).")
            train_ebm(None if a.config is None else resolve_ebm(a.config), a.out, steps=a.steps, seed=a.seed,
                      resume=a.resume, device=a.device, progress=not a.no_progress, max_minutes=a.max_minutes,
                      log_every=a.log_every, sample_every=a.sample_every, save_every=a.save_every)
            return
        spec, options = a.config, {}
        if Path(spec).suffix in (".yaml", ".yml", ".toml", ".json"):  # a file may set the run options too
            spec, options = split_run_options(load_file(spec))
        flags = {"precision": a.precision, "grad_accum": a.grad_accum, "compile": a.compile, "channels_last": a.channels_last}
        flags = {k: options.get(k) if v is None else v for k, v in flags.items()}
        train(resolve(spec), a.out, steps=a.steps, seed=a.seed, resume=a.resume, progress=not a.no_progress,
              device=a.device, log_every=a.log_every, sample_every=a.sample_every, save_every=a.save_every,
              max_minutes=a.max_minutes, precision=flags["precision"], grad_accum=flags["grad_accum"],
              compile_model=flags["compile"], channels_last=flags["channels_last"])
    except DifflabError as e:
        if not from_env().is_main and not isinstance(e, PeerLost):
            raise SystemExit(2) from None  # the same sentence comes from rank 0
        raise


def _energy_based(a) -> bool:
    """Whether the preset, config file or (on resume) run directory is an energy-based one."""
    from ..ebm.run import is_ebm_run
    from ..training.ebm import is_ebm_spec

    return is_ebm_spec(a.config) or (bool(a.resume) and is_ebm_run(a.out))
