"""The browser app's functions without a browser: the parameter PNG round trip, request checks, the bounded queue
(limits, places, Stop, abandoned jobs), one tile reproduced by its own seed, and the HTTP API in-process."""

from __future__ import annotations

import base64
import io
import json
import threading
import time
import urllib.error
import urllib.request

import pytest
import torch

import difflab
from difflab.app import params as P
from difflab.app import work
from difflab.app.jobs import Cancelled, JobQueue, QueueFull
from difflab.app.server import App, make_server
from difflab.errors import DifflabError


@pytest.fixture(scope="module")
def mnist():
    return difflab.load("mnist")


# ------------------------------------------------------------------------------------------- parameters
def test_png_round_trip_keeps_every_parameter():
    params = {"model": "mnist", "sampler": "dpmpp_2m", "steps": 17, "seed": 123, "classes": [3], "scale": 2.5,
              "guidance": "cfg", "compose": False, "eta": 0.0, "num": 1, "discretization": "karras"}
    image = torch.rand(1, 28, 28)
    png = P.png_with_params(image, params)
    assert P.params_from_png(png) == params
    from PIL import Image
    pixels = torch.tensor(list(Image.open(io.BytesIO(png)).getdata()), dtype=torch.float32).reshape(28, 28) / 255
    assert (pixels - image[0]).abs().max() <= 0.5 / 255 + 1e-6


def test_png_without_parameters_or_not_png_is_one_sentence():
    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (4, 4)).save(buf, format="PNG")
    with pytest.raises(DifflabError, match="carries no difflab parameters"):
        P.params_from_png(buf.getvalue())
    with pytest.raises(DifflabError, match="not a readable PNG"):
        P.params_from_png(b"GIF89a not a png")


@pytest.mark.parametrize("request_,match", [
    ({"sampler": "nope"}, "sampler must be one of"),
    ({"steps": 999}, "steps must be a whole number from 1 to 250"),
    ({"steps": "ten"}, "steps must be a whole number"),
    ({"num": 17}, "num must be a whole number from 1 to 16"),
    ({"classes": "3,12"}, "class 12 is out of range"),
    ({"classes": "three"}, "classes must be whole numbers"),
    ({"guidance": "cfg"}, "needs at least one class"),
    ({"compose": True, "classes": "3"}, "two or more classes"),
    ({"scale": -1}, "scale must be a number from 0.0 to 20.0"),
    ({"model": "other"}, "model must be one of mnist"),
    ({"discretization": "sections"}, "discretization must be one of"),
    ({"sampler": "consistency"}, "sampler must be one of ddim"),  # made for consistency models; mnist predicts ε
])
def test_requests_over_a_limit_are_refused_before_work(mnist, request_, match):
    with pytest.raises(DifflabError, match=match):
        P.check_generate(request_, {"mnist": mnist}, P.Limits())


def test_a_model_is_offered_the_samplers_made_for_its_kind(mnist):
    """The consistency sampler is offered for consistency models only; every other sampler for every model."""
    from difflab import samplers

    eps = samplers.for_models(mnist.parameterization)
    assert mnist.parameterization == "eps" and "consistency" not in eps
    assert set(samplers.names()) - set(eps) == {"consistency"}
    assert set(samplers.for_models("consistency")) == set(samplers.names())
    config = App({"mnist": mnist}).config()
    assert config["models"][0]["samplers"] == eps and config["models"][0]["sampler"] in eps
    with pytest.raises(DifflabError, match="unknown sampler 'consistency'"):
        P.check_compare({"samplers": "ddim,consistency", "steps_list": "2"}, {"mnist": mnist}, P.Limits())


def test_compare_grid_size_is_limited(mnist):
    with pytest.raises(DifflabError, match="1 to 12 cells"):
        P.check_compare({"samplers": "ddim,ddpm,unipc,heun", "steps_list": "1,2,3,4"}, {"mnist": mnist}, P.Limits())


# ------------------------------------------------------------------------------------------------ queue
def _blocking(release: threading.Event, steps: int = 1000):
    def fn(job):
        for _ in range(steps):
            job.step()
            if release.wait(0.01):
                return "released"
        return "ran out"
    return fn


def test_queue_runs_at_most_k_and_refuses_past_its_length():
    q = JobQueue(running=1, waiting=2, abandon_after=60)
    release = threading.Event()
    first = q.submit("t", _blocking(release), 1000)
    while first.status != "running":
        time.sleep(0.01)
    second, third = q.submit("t", _blocking(release), 1), q.submit("t", _blocking(release), 1)
    assert (q.place(first), q.place(second), q.place(third)) == (None, 1, 2)
    with pytest.raises(QueueFull, match="queue is full"):
        q.submit("t", _blocking(release), 1)
    assert q.active() == 3
    release.set()
    for job in (first, second, third):
        while job.status in ("waiting", "running"):
            time.sleep(0.01)
        assert job.status == "done" and job.result == "released"
    q.close()


def test_stop_ends_a_running_job_at_its_next_step_and_a_waiting_one_at_once():
    q = JobQueue(running=1, waiting=4, abandon_after=60)
    never = threading.Event()
    running = q.submit("t", _blocking(never), 1000)
    waiting = q.submit("t", _blocking(never), 1)
    while running.status != "running":
        time.sleep(0.01)
    assert q.stop(waiting.id) and waiting.status == "stopped"
    q.stop(running.id)
    deadline = time.monotonic() + 5
    while running.status == "running" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert running.status == "stopped" and running.done < 1000
    with pytest.raises(Cancelled):
        running.step()
    q.close()


def test_a_job_nobody_polls_is_stopped():
    """A closed tab stops polling: its job ends after abandon_after seconds instead of running on."""
    q = JobQueue(running=1, waiting=4, abandon_after=0.4)
    job = q.submit("t", _blocking(threading.Event(), steps=10**6), 10**6)
    deadline = time.monotonic() + 5
    while job.status != "stopped" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert job.status == "stopped"
    q.close()


def test_failed_work_reports_one_sentence():
    q = JobQueue(running=1, waiting=1, abandon_after=60)

    def bad(job):
        raise DifflabError("the sampler needs at least 2 steps, got 1.")
    job = q.submit("t", bad, 1)
    while job.status in ("waiting", "running"):
        time.sleep(0.01)
    assert job.status == "failed" and job.error == "the sampler needs at least 2 steps, got 1."
    q.close()


# --------------------------------------------------------------------------------------------- the work
class _Job:
    """A stand-in for a queue job: counts steps, keeps the last preview."""

    def __init__(self):
        self.done, self.preview = 0, {}

    def step(self, done=None):
        self.done += 1

    def show(self, **images):
        self.preview = images


def _pixels(png: bytes) -> torch.Tensor:
    from PIL import Image
    img = Image.open(io.BytesIO(png))
    return torch.tensor(list(img.getdata()), dtype=torch.float32)


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_one_tile_is_reproduced_by_its_own_seed(mnist, sampler):
    """Tile 2 of a batch of 4 (classes 1, 7 alternating, CFG w = 1) equals a batch of one with the parameters its PNG
    carries: seed + 2 and its own class, also for the stochastic ancestral sampler."""
    p = P.check_generate({"sampler": sampler, "steps": 6, "num": 4, "seed": 40, "classes": "1,7", "guidance": "cfg",
                          "scale": 1}, {"mnist": mnist}, P.Limits())
    job = _Job()
    batch = work.generate(mnist, p, job)
    assert job.done == batch["nfe"] >= 6 and set(job.preview) >= {"x_t", "x0"}
    alone_params = P.params_from_png(batch["tiles"][2])
    assert alone_params["seed"] == 42 and alone_params["classes"] == [1] and alone_params["num"] == 1
    alone = work.generate(mnist, P.check_generate(alone_params, {"mnist": mnist}, P.Limits()), _Job())
    assert (_pixels(alone["tiles"][0]) - _pixels(batch["tiles"][2])).abs().max() <= 1
    assert (_pixels(batch["tiles"][2]) - _pixels(batch["tiles"][3])).abs().max() > 50  # tiles differ


def test_mask_painting_marks_every_touched_model_pixel(mnist):
    from PIL import Image, ImageDraw

    canvas = Image.new("RGBA", (280, 280), (0, 0, 0, 0))
    ImageDraw.Draw(canvas).rectangle([0, 0, 139, 279], fill=(255, 255, 255, 255))  # the left half
    mask = work.to_mask(mnist, canvas)
    assert mask.shape == (1, 1, 28, 28)
    assert mask[0, 0, :, :14].sum() == 0 and mask[0, 0, :, 14:].min() == 1
    with pytest.raises(DifflabError, match="mask is empty"):
        work.to_mask(mnist, Image.new("RGBA", (280, 280), (0, 0, 0, 0)))


# ----------------------------------------------------------------------------------------------- the API
@pytest.fixture(scope="module")
def server(mnist):
    app = App({"mnist": mnist}, P.Limits(max_images=8, max_steps=60, waiting=2), abandon_after=60)
    srv = make_server(app, "127.0.0.1", 0)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", app
    srv.shutdown()
    app.queue.close()
    srv.server_close()


def _call(url: str, body=None):
    data = None if body is None else json.dumps(body).encode()
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=30) as r:
            raw = r.read()
            return r.status, (json.loads(raw) if r.headers.get_content_type() == "application/json" else raw)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _wait(base: str, job: str) -> dict:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        _, s = _call(f"{base}/api/jobs/{job}")
        if s["status"] not in ("waiting", "running"):
            return s
        time.sleep(0.05)
    raise AssertionError("the job did not finish")


def test_api_generates_downloads_and_restores(server):
    base, _ = server
    status, page = _call(base + "/")
    assert status == 200 and b"<script src=\"/static/app.js\">" in page and b"http" not in page.replace(b"http-equiv", b"")
    status, r = _call(base + "/api/generate", {"model": "mnist", "steps": 5, "num": 3, "seed": 7})
    assert status == 200
    s = _wait(base, r["job"])
    assert s["status"] == "done" and s["result"]["seeds"] == [7, 8, 9] and len(s["result"]["tiles"]) == 3
    status, png = _call(base + s["result"]["tiles"][1])
    assert status == 200 and P.params_from_png(png)["seed"] == 8
    status, back = _call(base + "/api/params", {"png": "data:image/png;base64," + base64.b64encode(png).decode()})
    assert status == 200 and back["params"]["seed"] == 8 and back["params"]["steps"] == 5


def test_api_bad_requests_get_a_sentence_not_a_trace(server):
    base, _ = server
    for body, match in (({"steps": 61}, "from 1 to 60"), ({"num": 9}, "from 1 to 8"), ({"sampler": "x"}, "sampler")):
        status, r = _call(base + "/api/generate", {"model": "mnist", **body})
        assert status == 400 and match in r["error"] and "Traceback" not in r["error"]
    status, r = _call(base + "/api/edit", {"model": "mnist", "task": "inpaint", "image": "data:image/png;base64,@@"})
    assert status == 400 and "not valid base64" in r["error"]
    status, r = _call(base + "/api/nothing", {})
    assert status == 404
    status, r = _call(base + "/api/jobs/999")
    assert status == 404 and "no job" in r["error"]


def test_api_full_queue_is_refused_with_429_and_stop_frees_it(server):
    base, app = server
    ids = []
    for _ in range(3):  # one runs, two wait (the limit)
        status, r = _call(base + "/api/generate", {"model": "mnist", "steps": 60, "sampler": "ddpm", "num": 8})
        assert status == 200
        ids.append(r["job"])
    status, r = _call(base + "/api/generate", {"model": "mnist", "steps": 5})
    assert status == 429 and "queue is full" in r["error"]
    for job in ids:
        assert _call(f"{base}/api/jobs/{job}/stop", {})[1]["stopped"]
    for job in ids:
        assert _wait(base, job)["status"] == "stopped"
    assert app.queue.active() == 0


def test_api_toy_field_and_edit(server):
    base, _ = server
    status, png = _call(base + "/api/toy?t=0.4")
    assert status == 200 and png[:8] == b"\x89PNG\r\n\x1a\n"
    status, r = _call(base + "/api/toy?t=2")
    assert status == 400 and "t must be" in r["error"]
    from PIL import Image, ImageDraw

    def url(img):
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    image = Image.new("L", (280, 280), 0)
    ImageDraw.Draw(image).ellipse([80, 60, 200, 220], outline=255, width=25)
    mask = Image.new("RGBA", (280, 280), (0, 0, 0, 0))
    ImageDraw.Draw(mask).rectangle([140, 0, 279, 279], fill=(255, 255, 255, 255))
    status, r = _call(base + "/api/edit", {"model": "mnist", "task": "inpaint", "steps": 5, "num": 2, "image": url(image),
                                           "mask": url(mask)})
    assert status == 200, r
    s = _wait(base, r["job"])
    assert s["status"] == "done" and s["result"]["grid"].endswith("grid.png") and len(s["result"]["tiles"]) == 2
    status, r = _call(base + "/api/edit", {"model": "mnist", "task": "inpaint", "image": url(image),
                                           "mask": url(Image.new("RGBA", (280, 280)))})
    assert status == 400 and "mask is empty" in r["error"]


# -------------------------------------------------------------------------------------- classifier guidance
@pytest.fixture(scope="module")
def guided(tmp_path_factory):
    """A tiny unconditional digits model and a tiny noise-aware classifier on its schedule (as the classifier
    guidance tests train them), served by an app given the classifier."""
    from conftest import TINY_DIGITS
    from test_classifier_guidance import TINY_CLASSIFIER

    from difflab.cli.main import main
    from difflab.saved import load_classifier

    root = tmp_path_factory.mktemp("app-clf")
    (root / "c.yaml").write_text(TINY_CLASSIFIER)
    (root / "d.yaml").write_text(TINY_DIGITS)
    assert main(["train-classifier", str(root / "c.yaml"), "--out", str(root / "clf"), "--no-progress"]) == 0
    assert main(["train", str(root / "d.yaml"), "--out", str(root / "run"), "--steps", "2", "--no-progress"]) == 0
    run = difflab.load(root / "run")
    return App({"digits": run}, P.Limits(), classifiers={"clf": load_classifier(root / "clf")}, abandon_after=60)


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_classifier_guidance_through_the_app(guided, sampler):
    """Classifier guidance of an unconditional model: the ε̂ form (Algorithm 2) with ddim, the mean shift (Algorithm 1)
    with ddpm, which sees the guidance through the app's watching wrapper; a scale of 0 leaves the samples alone."""
    assert guided.fits == {"digits": ["clf"]} and guided.config()["models"][0]["classifiers"] == ["clf"]
    base = {"model": "digits", "sampler": sampler, "steps": 5, "num": 2, "seed": 3, "classes": "4"}
    p = P.check_generate({**base, "guidance": "classifier", "scale": 20}, guided.images, guided.limits, guided.fits,
                         guided.classes)
    assert p["classifier"] == "clf"
    clf = guided.classifiers["clf"]
    run = guided.images["digits"]
    pushed = work.generate(run, p, _Job(), clf)["tiles"]
    plain = work.generate(run, P.check_generate({k: v for k, v in base.items() if k != "classes"}, guided.images,
                                                guided.limits), _Job())["tiles"]
    zero = work.generate(run, {**p, "scale": 0.0}, _Job(), clf)["tiles"]
    assert (_pixels(zero[0]) - _pixels(plain[0])).abs().max() <= 1
    assert (_pixels(pushed[0]) - _pixels(plain[0])).abs().max() > 10


def test_classifier_guidance_refusals(guided, mnist):
    with pytest.raises(DifflabError, match="class 12 is out of range: the classifier knows classes 0..9"):
        P.check_generate({"guidance": "classifier", "classes": "12"}, guided.images, guided.limits, guided.fits,
                         guided.classes)
    with pytest.raises(DifflabError, match="no classifier fits model 'mnist'"):
        P.check_generate({"guidance": "classifier", "classes": "1"}, {"mnist": mnist}, P.Limits(), {"mnist": []}, {})
    with pytest.raises(DifflabError, match="has no classes; give classes with a class-conditional model or with"):
        P.check_generate({"classes": "1"}, guided.images, guided.limits, guided.fits, guided.classes)
