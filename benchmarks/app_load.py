"""Load on the browser app: 50 clients at once against ``difflab app mnist`` on 127.0.0.1.

Each client asks for 4 images (ddim, 10 steps) and polls its job until it ends; 5 of them come first, ask for a long
job (16 images, ddpm, 250 steps) and walk away (a closed tab), so the app must stop what nobody watches. Meanwhile a probe asks for /api/config every 0.25 s (does the server keep answering?). Measured:
the submit-to-done latency of completed jobs (p50, p95), how many requests were refused (the bounded queue's 429),
failures of any other kind, the server's peak resident memory (VmHWM), the probe's latency, and whether anything is
still running once the abandoned jobs' timeout has passed. Bounded: 50 requests, 300 s per client.

    python benchmarks/app_load.py [--clients 50] [--abandon 5]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import write_table  # noqa: E402

ABANDON_AFTER = 30  # the app's default: a job nobody polls for 30 s is stopped


def call(url: str, body=None, timeout: float = 30):
    data = None if body is None else json.dumps(body).encode()
    t0 = time.monotonic()
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=timeout) as r:
            return r.status, json.loads(r.read()), time.monotonic() - t0
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read()), time.monotonic() - t0


def client(base: str, i: int, abandon: bool, out: list) -> None:
    t0 = time.monotonic()
    try:
        ask = {"sampler": "ddpm", "steps": 250, "num": 16} if abandon else {"sampler": "ddim", "steps": 10, "num": 4}
        status, r, _ = call(f"{base}/api/generate", {"model": "mnist", "seed": i, **ask})
        if status == 429:
            out.append(("refused", time.monotonic() - t0, r.get("error", "")))
            return
        if status != 200:
            out.append(("error", time.monotonic() - t0, r.get("error", str(status))))
            return
        if abandon:
            out.append(("abandoned", time.monotonic() - t0, r["job"]))
            return
        while time.monotonic() - t0 < 300:
            _, s, _ = call(f"{base}/api/jobs/{r['job']}")
            if s["status"] not in ("waiting", "running"):
                out.append((s["status"], time.monotonic() - t0, s.get("error") or ""))
                return
            time.sleep(0.2)
        out.append(("timeout", time.monotonic() - t0, ""))
    except Exception as e:  # a dropped connection is a failure of the server under load
        out.append(("error", time.monotonic() - t0, f"{type(e).__name__}: {e}"))


def peak_memory_mb(pid: int) -> float:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", text).group(1)) / 1024


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--abandon", type=int, default=5)
    a = p.parse_args()
    server = subprocess.Popen([sys.executable, "-m", "difflab", "app", "mnist", "--port", "0"], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        line = server.stdout.readline()
        base = re.search(r"(http://[\d.]+:\d+)/", line).group(1)
        rss_idle = peak_memory_mb(server.pid)
        results: list = []
        probes: list[float] = []
        stop = threading.Event()

        def probe():
            while not stop.is_set():
                status, _, dt = call(f"{base}/api/config", timeout=10)
                probes.append(dt if status == 200 else float("inf"))
                time.sleep(0.25)
        prober = threading.Thread(target=probe, daemon=True)
        prober.start()
        t0 = time.monotonic()
        for i in range(a.abandon):  # the walkers-away first: their long jobs hold the queue until they are stopped
            client(base, i, True, results)
        threads = [threading.Thread(target=client, args=(base, i, False, results)) for i in range(a.abandon, a.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(330)
        wall = time.monotonic() - t0
        time.sleep(ABANDON_AFTER + 3)  # the abandoned jobs' timeout
        stop.set()
        prober.join()
        _, health, _ = call(f"{base}/api/health")
        abandoned_end = [call(f"{base}/api/jobs/{r[2]}")[1].get("status") for r in results if r[0] == "abandoned"]
        peak = peak_memory_mb(server.pid)
    finally:
        server.terminate()
        server.wait(10)
    kinds = {k: sum(r[0] == k for r in results) for k in ("done", "refused", "abandoned", "stopped", "failed", "error",
                                                         "timeout")}
    done = sorted(r[1] for r in results if r[0] == "done")
    refused = sorted(r[1] for r in results if r[0] == "refused")

    def q(values, f):
        return values[min(len(values) - 1, int(f * len(values)))] if values else float("nan")
    messages = sorted({r[2] for r in results if r[0] in ("refused", "failed", "error")})
    lines = [
        f"{a.clients} clients at once ({a.abandon} submit and walk away), each asking `difflab app mnist` on 127.0.0.1 "
        "for 4 images (ddim, 10 steps); the app's defaults: 1 job running, 8 waiting, abandoned jobs stopped after "
        f"{ABANDON_AFTER} s. CPU: {os.cpu_count()} cores; torch threads as the app sets them.",
        "",
        "| measure | value |", "|---|---|",
        f"| completed | {kinds['done']} |",
        f"| refused cleanly (429, queue full) | {kinds['refused']} |",
        f"| walked away (abandoned), and how their jobs ended | {kinds['abandoned']}: "
        f"{abandoned_end.count('stopped')} stopped unwatched, {abandoned_end.count('done')} finished before its "
        f"{ABANDON_AFTER} s ran out |",
        f"| failed / errors / timeouts | {kinds['failed']} / {kinds['error']} / {kinds['timeout']} |",
        f"| latency of completed jobs, p50 / p95 (s) | {q(done, 0.5):.2f} / {q(done, 0.95):.2f} |",
        f"| latency of a refusal, p50 / p95 (s) | {q(refused, 0.5):.3f} / {q(refused, 0.95):.3f} |",
        f"| /api/config probe while loaded, p50 / p95 / max (s) | {statistics.median(probes):.3f} / "
        f"{q(sorted(probes), 0.95):.3f} / {max(probes):.3f} ({len(probes)} probes) |",
        f"| server peak memory (VmHWM), idle → after (MiB) | {rss_idle:.0f} → {peak:.0f} |",
        f"| jobs still waiting or running {ABANDON_AFTER + 3} s after the last client | {health['active']} |",
        f"| wall time of the clients (s) | {wall:.1f} |",
        "",
        "Refusal and failure messages seen: " + ("; ".join(f"“{m}”" for m in messages) or "none") + ".",
    ]
    write_table("app_load.md", "Browser app under load: 50 concurrent requests", lines)
    ok = kinds["error"] == kinds["timeout"] == kinds["failed"] == 0 and health["active"] == 0 \
        and all(e in ("done", "stopped") for e in abandoned_end)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
