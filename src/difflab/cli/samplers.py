"""``difflab samplers``: list the samplers: order, stochastic or not, network evaluations per step."""

from __future__ import annotations

import argparse

NAME = "samplers"
HELP = "list the samplers: order, stochastic or not, network evaluations per step"


def add_arguments(p: argparse.ArgumentParser) -> None:
    pass


def execute(a) -> None:
    from .. import samplers

    print(f"{'sampler':<14} {'order':>5} {'stochastic':>10} {'NFE/step':>9} {'min steps':>9}  summary")
    for name in samplers.names():
        i = samplers.info(name)
        print(f"{name:<14} {i['order']:>5} {'yes' if i['stochastic'] else 'no':>10} {i['nfe_per_step']:>9} {i['min_steps']:>9}  {i['summary']}")
