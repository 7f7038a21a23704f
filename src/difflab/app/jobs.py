"""A bounded queue of jobs: at most ``running`` at once, at most ``waiting`` behind them, each with its place, its
progress, a live preview, a Stop, and an end when nobody watches it any more.

A job's work is ``fn(job)``; it reports with :meth:`Job.step` (which raises :class:`Cancelled` once the job is
stopped, so the work stops at its next network evaluation) and :meth:`Job.show` (the latest preview images).
"""

from __future__ import annotations

import itertools
import threading
import time
import traceback
from collections import OrderedDict, deque

from ..errors import DifflabError


class Cancelled(Exception):
    """Raised inside a job's work when it was stopped."""


class QueueFull(DifflabError):
    pass


class Job:
    def __init__(self, job_id: str, kind: str, fn, total: int):
        self.id, self.kind, self.fn, self.total = job_id, kind, fn, max(1, int(total))
        self.status = "waiting"      # waiting | running | done | failed | stopped
        self.done = 0
        self.error: str | None = None
        self.result = None
        self.preview: dict = {}
        self.started = self.finished = None
        self.seen = time.monotonic()
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def step(self, done: int | None = None) -> None:
        """Count one unit of work (or set the count); stop here if the job was stopped."""
        if self._stop.is_set():
            raise Cancelled()
        self.done = min(self.total, self.done + 1 if done is None else done)

    def show(self, **images) -> None:
        """Replace the preview (name → PNG data URL)."""
        self.preview = images

    def state(self, place: int | None) -> dict:
        elapsed = None
        if self.started is not None:
            elapsed = (self.finished or time.monotonic()) - self.started
        return {"id": self.id, "kind": self.kind, "status": self.status, "place": place, "done": self.done,
                "total": self.total, "error": self.error, "preview": self.preview,
                "seconds": None if elapsed is None else round(elapsed, 2)}


class JobQueue:
    """``running`` worker threads over a FIFO of at most ``waiting`` jobs. A job not polled for ``abandon_after``
    seconds (its tab was closed) is stopped; finished jobs are kept for ``keep`` more requests, then dropped."""

    def __init__(self, running: int = 1, waiting: int = 8, abandon_after: float = 30.0, keep: int = 32):
        self.waiting, self.abandon_after, self.keep = waiting, abandon_after, keep
        self._lock = threading.Condition()
        self._queue: deque[Job] = deque()
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._ids = itertools.count(1)
        self._closed = False
        self._workers = [threading.Thread(target=self._work, daemon=True, name=f"difflab-app-worker-{i}")
                         for i in range(running)]
        for w in self._workers:
            w.start()
        self._reaper = threading.Thread(target=self._reap, daemon=True, name="difflab-app-reaper")
        self._reaper.start()

    def submit(self, kind: str, fn, total: int) -> Job:
        with self._lock:
            if self._closed:
                raise QueueFull("the server is shutting down.")
            if len(self._queue) >= self.waiting:
                raise QueueFull(f"the queue is full ({self.waiting} jobs waiting); try again when one has finished.")
            job = Job(f"{next(self._ids)}", kind, fn, total)
            self._queue.append(job)
            self._jobs[job.id] = job
            self._forget_old()
            self._lock.notify()
            return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is not None:
                job.seen = time.monotonic()
            return job

    def place(self, job: Job) -> int | None:
        """1 for the next job to run, 2 behind it, ...; None once it runs."""
        with self._lock:
            try:
                return self._queue.index(job) + 1
            except ValueError:
                return None

    def stop(self, job_id: str) -> bool:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                return False
            job.stop()
            if job in self._queue:  # never started: it ends now
                self._queue.remove(job)
                job.status = "stopped"
            return True

    def active(self) -> int:
        """Jobs waiting or running."""
        with self._lock:
            return sum(j.status in ("waiting", "running") for j in self._jobs.values())

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for job in self._jobs.values():
                job.stop()
            self._queue.clear()
            self._lock.notify_all()

    def _forget_old(self) -> None:
        finished = [k for k, j in self._jobs.items() if j.status in ("done", "failed", "stopped")]
        for k in finished[:max(0, len(finished) - self.keep)]:
            del self._jobs[k]

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._closed:
                    self._lock.wait()
                if self._closed:
                    return
                job = self._queue.popleft()
                job.status, job.started = "running", time.monotonic()
            try:
                job.result = job.fn(job)
                job.status = "done"
            except Cancelled:
                job.status = "stopped"
            except DifflabError as e:
                job.error, job.status = str(e), "failed"
            except Exception as e:  # a bug: the page gets one line, the server log the trace
                traceback.print_exc()
                job.error, job.status = f"internal error ({type(e).__name__}: {e}).", "failed"
            finally:
                job.finished = time.monotonic()
                job.fn = None

    def _reap(self) -> None:
        while not self._closed:
            time.sleep(min(1.0, self.abandon_after / 4))
            now = time.monotonic()
            with self._lock:
                for job in list(self._jobs.values()):
                    if job.status in ("waiting", "running") and now - job.seen > self.abandon_after:
                        job.stop()
                        if job in self._queue:
                            self._queue.remove(job)
                            job.status = "stopped"
