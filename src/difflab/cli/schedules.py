"""``difflab schedules``: compare the noise schedules."""

from __future__ import annotations

import argparse

from ._args import error, integer

NAME = "schedules"
HELP = "compare the noise schedules"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--T", type=integer, default=1000, help="number of timesteps (default 1000)")
    p.add_argument("--plot", help="write a picture of ᾱ_t and the log-SNR over t/T to this .png")


def execute(a) -> None:
    from .. import schedules

    if a.plot and not a.plot.endswith(".png"):
        raise error(f"--plot file {a.plot!r} must end in .png.")
    rows = [schedules.summary(schedules.get(name, a.T)) for name in schedules.names()]
    print(f"{'schedule':<10} {'ᾱ(T/4)':>10} {'ᾱ(T/2)':>10} {'ᾱ(3T/4)':>10} {'ᾱ(T)':>10} {'SNR<1 from t/T':>15}")
    for name, r in zip(schedules.names(), rows):
        a1, a2, a3, a4 = r["alpha_bar_at_quarters"]
        print(f"{name:<10} {a1:>10.4f} {a2:>10.4f} {a3:>10.4f} {a4:>10.2e} {r['snr_below_one_from']:>15.3f}")
    if a.plot:
        from .. import plotting
        plotting.plot_schedules({name: schedules.get(name, a.T).alpha_bar.numpy() for name in schedules.names()}, a.plot)
        print(f"wrote {a.plot}")
