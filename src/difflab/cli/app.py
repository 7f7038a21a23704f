"""``difflab app``: the local browser app (generate, watch, paint and edit, compare, toys)."""

from __future__ import annotations

import argparse

from ._args import error, integer

NAME = "app"
HELP = "start the local browser app: generate and watch x_t and x̂_0, paint and inpaint, SDEdit, compare samplers, toys"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="*", help="models to offer: run directories, exported models, diffusers folders or "
                                           "shipped names (default: the shipped ones)")
    p.add_argument("--classifier", action="append", default=[], metavar="RUN",
                   help="a noise-aware classifier run (difflab train-classifier) for classifier guidance of the models "
                        "it fits; may be given more than once")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=integer, default=7860, help="port (default 7860; 0 picks a free one)")
    p.add_argument("--jobs", type=integer, default=1, help="jobs run at once (default 1: each uses every CPU core)")
    p.add_argument("--queue", type=integer, default=8, help="jobs that may wait behind them; more are refused (default 8)")
    p.add_argument("--max-images", type=integer, default=16, help="images per request (default 16)")
    p.add_argument("--max-steps", type=integer, default=250, help="sampling steps per request (default 250)")


def execute(a) -> None:
    from .. import pretrained
    from ..app.params import Limits
    from ..app.server import App, make_server
    from ..run import load

    if a.jobs < 1 or a.queue < 0 or a.max_images < 1 or a.max_steps < 1:
        raise error("--jobs, --max-images and --max-steps must be at least 1, --queue at least 0.")
    if not 0 <= a.port <= 65535:
        raise error(f"--port must be from 0 to 65535, got {a.port}.")
    names = a.runs or pretrained.names()
    models = {}
    for name in names:
        run = load(name)
        key = str(name)
        if key in models:
            raise error(f"{key!r} is given twice.")
        models[key] = run
    from ..saved import load_classifier

    classifiers = {str(c): load_classifier(c) for c in a.classifier}
    app = App(models, Limits(max_images=a.max_images, max_steps=a.max_steps, running=a.jobs, waiting=a.queue),
              classifiers=classifiers)
    for name, fits in ((c, [m for m, f in app.fits.items() if c in f]) for c in classifiers):
        if not fits:
            raise error(f"classifier {name!r} fits none of the models (another schedule, image shape or normalisation).")
    try:
        server = make_server(app, a.host, a.port)
    except OSError as e:
        raise error(f"cannot listen on {a.host}:{a.port} ({e.strerror or e}); choose another --port.") from None
    host, port = server.server_address[:2]
    print(f"difflab app: serving {', '.join(models) or 'no image model'} at http://{host}:{port}/ (Ctrl-C stops it)",
          flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        app.queue.close()
        server.server_close()
