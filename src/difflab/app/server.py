"""The app's HTTP server: Python's ``ThreadingHTTPServer``, the page in ``static/``, and a JSON API.

    GET  /                         the page (no external fonts or scripts)
    GET  /api/config               models, samplers, discretizations, limits
    GET  /api/health               {"active": jobs waiting or running}
    POST /api/generate | /api/edit | /api/compare     → {"job": id}, or {"error": sentence} (400, 429 when full)
    GET  /api/jobs/ID              status, place in the queue, progress, preview (x_t, x̂_0), results when done
    POST /api/jobs/ID/stop         stop it (also sent when the tab closes)
    GET  /api/jobs/ID/tile/K.png   tile K, its parameters in the PNG's text
    GET  /api/jobs/ID/grid.png     the comparison grid or the edit's side-by-side picture
    POST /api/params               {"png": data URL} → the parameters it carries
    GET  /api/toy?model=M&t=F      the toy's samples and score field at t = F · T (PNG)
"""

from __future__ import annotations

import json
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from ..errors import DifflabError
from . import params as P
from . import work
from .jobs import JobQueue, QueueFull

STATIC = Path(__file__).parent / "static"
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
#: the exact Gaussian-mixture oracle offered in the toy tab beside any toy runs given
ORACLE = "8gaussians (exact oracle)"


class App:
    """The loaded models, the job queue and the limits that the request handler serves."""

    def __init__(self, models: dict, limits: P.Limits | None = None, toys: dict | None = None,
                 abandon_after: float = 30.0, classifiers: dict | None = None):
        from ..data.toys import GAUSSIANS8_CENTRES, GAUSSIANS8_STD
        from ..toy import GaussianMixture

        self.limits = limits or P.Limits()
        self.images = {k: r for k, r in models.items() if r.kind == "image"}
        self.toys = {ORACLE: GaussianMixture(GAUSSIANS8_CENTRES.double(), GAUSSIANS8_STD),
                     **{k: r for k, r in models.items() if r.kind != "image"}, **(toys or {})}
        self.queue = JobQueue(self.limits.running, self.limits.waiting, abandon_after=abandon_after)
        self.toy_lock = threading.Semaphore(1)
        self.classifiers = dict(classifiers or {})  # name -> ClassifierRun
        self.fits = {m: [c for c, clf in self.classifiers.items() if _fits(clf, r)] for m, r in self.images.items()}
        self.classes = {c: clf.num_classes for c, clf in self.classifiers.items()}

    def config(self) -> dict:
        from .. import samplers
        from ..samplers.discretizations import NAMES

        return {"models": [{"name": k, "shape": list(r.shape), "classes": r.config["model"].get("num_classes") or 0,
                            "classifiers": self.fits[k],
                            "sampler": r.config["sample"]["sampler"],
                            "samplers": samplers.for_models(r.parameterization),
                            "steps": min(r.config["sample"]["steps"],
                                                                                   self.limits.max_steps)}
                           for k, r in self.images.items()],
                "toys": list(self.toys), "samplers": samplers.names(),
                "discretizations": [n for n in NAMES if n != "sections"], "limits": self.limits.__dict__}

    def submit(self, path: str, body: dict):
        if not self.images:
            raise DifflabError("no image model is loaded; start the app with a run, e.g. difflab app mnist.")
        if path == "/api/generate":
            p = P.check_generate(body, self.images, self.limits, self.fits, self.classes)
            run, clf = self.images[p["model"]], self.classifiers.get(p["classifier"])
            return self.queue.submit("generate", lambda job: work.generate(run, p, job, clf),
                                     work.expected_calls(p["sampler"], p["steps"]))
        if path == "/api/edit":
            p = P.check_edit(body, self.images, self.limits, self.fits, self.classes)
            run, clf = self.images[p["model"]], self.classifiers.get(p["classifier"])
            image = P.image_from_data_url(body.get("image"), "the image", self.limits)
            mask = P.image_from_data_url(body.get("mask"), "the mask", self.limits) if p["task"] == "inpaint" else None
            if mask is not None:
                work.to_mask(run, mask)  # an empty mask is refused now, not after the queue
            total = work.expected_calls(p["sampler"], p["steps"]) * (5 if p["method"] == "repaint" else 1)
            return self.queue.submit("edit", lambda job: work.edit(run, p, image, mask, job, clf), total)
        if path == "/api/compare":
            p = P.check_compare(body, self.images, self.limits, self.fits, self.classes)
            run, clf = self.images[p["model"]], self.classifiers.get(p["classifier"])
            total = sum(work.expected_calls(n, s) for n in p["samplers"] for s in p["steps_list"])
            return self.queue.submit("compare", lambda job: work.compare(run, p, p["samplers"], p["steps_list"], job,
                                                                         clf), total)
        return None

    def job_state(self, job) -> dict:
        state = job.state(self.queue.place(job))
        if job.status == "done":
            r = job.result
            state["result"] = {k: v for k, v in r.items() if k not in ("tiles", "grid")}
            state["result"]["tiles"] = [f"/api/jobs/{job.id}/tile/{i}.png" for i in range(len(r.get("tiles", [])))]
            if "grid" in r:
                state["result"]["grid"] = f"/api/jobs/{job.id}/grid.png"
        return state


def _fits(classifier, run) -> bool:
    """Whether a noise-aware classifier was trained on the model's schedule, image shape and normalisation."""
    try:
        classifier.check_fits(run.schedule, run.shape, run.config["normalization"])
        return True
    except DifflabError:
        return False


class Handler(BaseHTTPRequestHandler):
    app: App
    server_version = "difflab-app"

    def log_message(self, fmt, *args):  # quiet: one line per request would drown the progress
        pass

    def _send(self, status: int, body: bytes, kind: str, extra: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, obj, status: int = 200) -> None:
        self._send(status, json.dumps(obj).encode(), "application/json")

    def _error(self, message: str, status: int = 400) -> None:
        self._json({"error": message}, status)

    def _body(self) -> dict | None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > self.app.limits.max_upload_bytes * 2:
            self._error(f"the request is {length} bytes; the limit is {self.app.limits.max_upload_bytes * 2}.",
                        HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
            return None
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError):
            self._error("the request body is not valid JSON.")
            return None
        if not isinstance(body, dict):
            self._error("the request must be a JSON object of parameters.")
            return None
        return body

    def do_GET(self):  # noqa: N802 (the standard library's name)
        url = urlparse(self.path)
        path = url.path
        try:
            if path in ("/", "/index.html"):
                return self._send(200, (STATIC / "index.html").read_bytes(), TYPES[".html"])
            if path.startswith("/static/"):
                f = (STATIC / path[len("/static/"):]).resolve()
                if f.parent != STATIC.resolve() or not f.is_file():
                    return self._error("no such file.", 404)
                return self._send(200, f.read_bytes(), TYPES.get(f.suffix, "application/octet-stream"))
            if path == "/api/config":
                return self._json(self.app.config())
            if path == "/api/health":
                return self._json({"active": self.app.queue.active()})
            if path == "/api/toy":
                q = parse_qs(url.query)
                name = q.get("model", [ORACLE])[0]
                if name not in self.app.toys:
                    return self._error(f"unknown toy model {name!r}; expected one of {', '.join(self.app.toys)}.")
                t = P._float({"t": q.get("t", ["0.5"])[0]}, "t", 0.5, 0.0, 1.0)
                with self.app.toy_lock:
                    png = work.toy_field(self.app.toys[name], t)
                return self._send(200, png, "image/png")
            if path.startswith("/api/jobs/"):
                parts = path.split("/")[3:]
                job = self.app.queue.get(parts[0])
                if job is None:
                    return self._error(f"no job {parts[0]!r} (finished jobs are kept for a while, then dropped).", 404)
                if len(parts) == 1:
                    return self._json(self.app.job_state(job))
                if job.status != "done":
                    return self._error(f"job {job.id} is {job.status}; it has no images yet.", 409)
                if len(parts) == 2 and parts[1] == "grid.png" and "grid" in job.result:
                    return self._send(200, job.result["grid"], "image/png")
                if len(parts) == 3 and parts[1] == "tile" and parts[2].endswith(".png"):
                    k = parts[2][:-4]
                    tiles = job.result.get("tiles", [])
                    if not k.isdigit() or int(k) >= len(tiles):
                        return self._error(f"job {job.id} has tiles 0..{len(tiles) - 1}.", 404)
                    name = f"difflab-{job.kind}-{job.id}-{k}.png"
                    return self._send(200, tiles[int(k)], "image/png",
                                      {"Content-Disposition": f'inline; filename="{name}"'})
            return self._error("no such page.", 404)
        except DifflabError as e:
            return self._error(str(e))

    def do_POST(self):  # noqa: N802
        path = urlparse(self.path).path
        body = self._body()
        if body is None:
            return
        try:
            if path.startswith("/api/jobs/") and path.endswith("/stop"):
                job_id = path.split("/")[3]
                return self._json({"stopped": self.app.queue.stop(job_id)})
            if path == "/api/params":
                import base64
                import binascii

                url = body.get("png", "")
                if not isinstance(url, str) or "," not in url:
                    raise DifflabError("send the dropped PNG as a data URL in 'png'.")
                try:
                    raw = base64.b64decode(url.split(",", 1)[1], validate=True)
                except (binascii.Error, ValueError):
                    raise DifflabError("the dropped file is not valid base64 data.") from None
                return self._json({"params": P.params_from_png(raw)})
            job = self.app.submit(path, body)
            if job is None:
                return self._error("no such action.", 404)
            return self._json({"job": job.id, "place": self.app.queue.place(job)})
        except QueueFull as e:
            return self._error(str(e), HTTPStatus.TOO_MANY_REQUESTS)
        except DifflabError as e:
            return self._error(str(e))


class Server(ThreadingHTTPServer):
    #: connections the kernel holds while the server accepts (the standard library's 5 resets a burst of clients)
    request_queue_size = 128


def make_server(app: App, host: str = "127.0.0.1", port: int = 7860) -> ThreadingHTTPServer:
    handler = type("BoundHandler", (Handler,), {"app": app})
    server = Server((host, port), handler)
    server.daemon_threads = True
    return server
