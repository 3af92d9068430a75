"""The scheduler: one thread that runs every in-flight request's job on one model, round by round
(on a CPU with two threads or more, two of them side by side, each with its share of the rows
and threads, each request on one: `Schedulers`, at the end).

Requests come from the server's event loop (`submit`), leave when they finish or when their
client goes away (`cancel`), and get their segments back as each round makes them (a `Ticket`'s
events, delivered into the request's event loop). Each round (`Runner.stream_round`):

1. takes the jobs submitted since the last round (a request that arrives mid-round joins here);
2. stops the cancelled ones (`Runner.cancel`: their windows leave the decoder, the source closed);
3. picks at most `max_batch` jobs, oldest first, among those not in debt (below), starts the new
   ones (`Runner.start`: opens the upload, detects the language), and lets their ready windows
   into the free rows of the decoding stream (`max_batch` rows): they are encoded and join the
   windows already decoding. While other jobs are in flight a job has one window in flight: a
   long file's VAD chunks would otherwise take every free row, and each chunk's encoder pass
   stalls the stream. Alone, it may have `solo_windows` (default 2);
4. takes `steps` decoder steps over every window in flight; a window that ends and fails the
   thresholds goes on in the stream at its next fallback temperature, one that is done is
   finished at once and its job's new segments, and its end or error, are handed to its
   request.

So no request waits for another's windows to end, only for the round in progress (its
encoder passes and two decoder steps), and the decoder's steps keep as many rows as there are
windows in flight (sixteen rows cost a step under three times what one row does).

Fairness is processor sharing by measured compute time, not by windows: a round's wall time is
shared out equally among the jobs in flight (each one's *credit* grows by round time / jobs), and
each job pays what its windows cost (its share of their encoder batch and of each decoder step,
`TranscriptionInfo.timings`). A job may start a new window when its credit is not below minus one
share; a window under way always goes on. A short clip costs a sliver of a batch
and runs in the next round; a long file's 30-s window, decoded in a batch of its own, costs more
than a whole batch of short clips, so with N short requests in flight it runs about once every N
rounds of theirs instead of lengthening every one of them. Alone, or with few others, it runs
every round. Credit is capped at zero: waiting earns no priority beyond one's turn, and among the
jobs that may run the oldest go first.

Two short waits, only while nothing is decoding, keep batches full without idling the model:
before a round with fewer than
`max_batch` jobs, the scheduler waits up to `batch_wait` seconds for more requests (clients that
just got their answer are sending the next one); and when every job in flight is in debt (a long
file whose short companions just finished), it waits for a new request before letting the long
file run on - `debt_wait`, or a tenth of what the long file's last window cost if that is more
(at most `DEBT_WAIT_MAX`): a short request that comes back meanwhile would otherwise wait that
whole window.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Set

import torch

from ...errors import ServerBusy
from ...pipeline.runner import Job, Runner

log = logging.getLogger("whisper_eas.serve")
DEBT_WAIT_MAX = 1.0  # seconds
STEPS = 2  # decoder steps per round (1, 3 and 4 measured no faster with benchmarks/serve_load.py)


class Ticket:
    """One request's job in the scheduler, and the way its results reach the request: `events`,
    an asyncio queue in the request's event loop, receives

        ("started", TranscriptionInfo)   the upload opened (and its language is known)
        ("segments", [Segment, ...])     the segments a round made, in order
        ("done", TranscriptionInfo)      the job finished; no more events
        ("error", Exception)             the job failed (AudioError: the upload is not audio); no more events
    """

    _ids = itertools.count()

    def __init__(self, job: Job, loop: asyncio.AbstractEventLoop):
        self.id = next(self._ids)
        self.job = job
        self.loop = loop
        self.events: "asyncio.Queue[tuple]" = asyncio.Queue()
        self.credit = 0.0  # seconds of compute this job may still use before it must wait (<= 0)
        self.spent = 0.0  # seconds of compute charged to it so far
        self.last_cost = 0.0  # seconds its last round cost it
        self.started = False
        self.finished = False
        self.scheduler: Optional["Scheduler"] = None  # the one running it

    def post(self, kind: str, value: Any) -> None:
        """Hand an event to the request (from the scheduler's thread)."""
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, (kind, value))
        except RuntimeError:  # the event loop is closed: the server is gone, nobody is listening
            pass


@dataclass
class Stats:
    submitted: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    rounds: int = 0


class Scheduler:
    """Runs the jobs of every in-flight request on `model`, `max_batch` windows per batch at
    most (see the module docstring). `start()` starts its thread, `stop()` ends it."""

    def __init__(self, model, max_batch: int = 16, batch_wait: float = 0.02, debt_wait: float = 0.1,
                 solo_windows: int = 2, steps: int = STEPS, threads: Optional[int] = None,
                 name: str = "whisper-eas-scheduler"):
        self.runner = Runner(model, batch_size=max_batch)
        self.threads = threads  # intra-op threads of this scheduler's thread (None: the process's)
        self.threads_set = threading.Event()  # its thread has set them
        self.max_batch = max_batch
        self.solo_windows = max(1, solo_windows)
        self.steps = steps  # decoder steps per round (Runner.stream_round)
        self.batch_wait = batch_wait if max_batch > 1 else 0.0
        self.debt_wait = debt_wait
        self.stats = Stats()
        self.active: List[Ticket] = []  # in flight, oldest first (the scheduler thread's own)
        self._incoming: List[Ticket] = []
        self._cancelled: Set[int] = set()
        self._wake = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._last_share = 0.0  # the last round's time per job in flight (seconds)

    # -- from any thread -------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: Optional[float] = None) -> None:
        """End the thread after its current round; requests still in flight get a ServerBusy."""
        with self._wake:
            self._stopping = True
            self._wake.notify()
        self._thread.join(timeout)

    def submit(self, job: Job, loop: asyncio.AbstractEventLoop) -> Ticket:
        ticket = Ticket(job, loop)
        ticket.scheduler = self
        with self._wake:
            if self._stopping:
                raise ServerBusy("the server is shutting down", status=503, code="shutting_down")
            self._incoming.append(ticket)
            self.stats.submitted += 1
            self._wake.notify()
        return ticket

    def cancel(self, ticket: Ticket) -> None:
        """Stop `ticket`'s job at the next round boundary (its client went away)."""
        with self._wake:
            self._cancelled.add(ticket.id)
            self._wake.notify()

    @property
    def in_flight(self) -> int:
        with self._wake:
            return len(self.active) + len(self._incoming)

    # -- the scheduler thread ----------------------------------------------------------------

    def _loop(self) -> None:
        if self.threads:  # OpenMP's (and MKL's) thread count is per calling thread: this one's own
            # torch sets a thread's count from its global one at the thread's first use of it,
            # once: that comes first, or it would undo this thread's own count later
            torch.get_num_threads()
            torch.set_num_threads(self.threads)
        self.threads_set.set()
        try:
            while self._take_new(block=True):
                chosen = self._choose()
                if not chosen and not self.runner.rows_in_flight:
                    continue
                self._run(chosen)
        finally:
            for ticket in self.active + self._incoming:
                self.runner.cancel(ticket.job)
                ticket.post("error", ServerBusy("the server is shutting down", status=503, code="shutting_down"))
            self.active, self._incoming = [], []

    def _take_new(self, block: bool, timeout: Optional[float] = None) -> bool:
        """Move submitted requests to `active` and stop the cancelled ones. `block`: wait for
        work when there is none (or up to `timeout`). False once the scheduler is stopping."""
        with self._wake:
            if block and not (self._incoming or self.active or self._cancelled or self._stopping):
                self._wake.wait()
            elif timeout and not (self._incoming or self._cancelled or self._stopping):
                self._wake.wait(timeout)
            if self._stopping:
                return False
            new, self._incoming = self._incoming, []
            cancelled, self._cancelled = self._cancelled, set()
        self.active.extend(new)
        for ticket in [t for t in self.active if t.id in cancelled]:
            self.runner.cancel(ticket.job)
            self.active.remove(ticket)
            self.stats.cancelled += 1
        return True

    def _choose(self) -> List[Ticket]:
        """The jobs of the next round: oldest first among those not in debt, `max_batch` at most,
        after waiting briefly for more requests (see the module docstring)."""
        if self.batch_wait and len(self._eligible()) < self.max_batch and not self.runner.rows_in_flight:
            deadline = time.monotonic() + self.batch_wait
            while len(self._eligible()) < self.max_batch and (left := deadline - time.monotonic()) > 0:
                if not self._take_new(block=False, timeout=left):
                    return []
        eligible = self._eligible()
        if not eligible and self.active and not self.runner.rows_in_flight:
            # all in debt and nothing decoding: wait a little for a new request, then go on
            wait = min(DEBT_WAIT_MAX, max(self.debt_wait, 0.1 * min(t.last_cost for t in self.active)))
            if not self._take_new(block=False, timeout=wait):
                return []
            eligible = self._eligible()
            if not eligible and self.active:
                lift = -max(t.credit for t in self.active)
                for t in self.active:
                    t.credit += lift
                eligible = self._eligible()
        return eligible[: self.max_batch]

    def _eligible(self) -> List[Ticket]:
        return [t for t in self.active if t.credit >= -self._last_share - 1e-9]

    def _run(self, chosen: List[Ticket]) -> None:
        t0 = time.perf_counter()
        in_flight = len(self.active)  # the round's time is shared among these, also those it finishes
        running = list(self.active)  # whose windows may decode this round (those under way go on)
        jobs = []
        for ticket in chosen:
            if not ticket.started:
                ticket.started = True
                try:
                    self.runner.start(ticket.job)
                except Exception as e:  # a bug, not the upload's fault: fail this request only
                    log.exception("starting a job failed")
                    self.runner.cancel(ticket.job)
                    ticket.job.error = e
                if not ticket.job.error:
                    ticket.post("started", ticket.job.info)
            if not ticket.job.done:
                jobs.append(ticket.job)
        by_job = {id(t.job): t for t in running}

        def deliver(done_jobs):
            for job in done_jobs:
                if id(job) in by_job:
                    self._deliver(by_job[id(job)])

        try:
            self.runner.stream_round(jobs, per_job=1 if len(self.active) > 1 else self.solo_windows,
                                     on_batch=deliver, steps=self.steps)
        except Exception as e:  # a bug: the requests of this round fail, the server goes on
            log.exception("a round failed")
            for ticket in running:
                if not ticket.job.done:
                    self.runner.cancel(ticket.job)
                    ticket.job.error = e
        elapsed = time.perf_counter() - t0
        self.stats.rounds += 1
        log.debug("round %d: %d new of %d jobs in flight, %d windows decoding, %.3f s", self.stats.rounds,
                  len(chosen), in_flight, self.runner.rows_in_flight, elapsed)
        self._charge(running, elapsed, in_flight)
        for ticket in running:
            self._deliver(ticket)

    def _charge(self, ran: List[Ticket], elapsed: float, in_flight: int) -> None:
        """Each of the `in_flight` jobs is owed an equal share of the round's time; those that ran
        pay for what they used."""
        share = elapsed / max(1, in_flight)
        self._last_share = share
        for ticket in ran:
            timings = ticket.job.info.timings if ticket.job.info is not None else {}
            spent = sum(timings.values())
            ticket.last_cost = spent - ticket.spent
            ticket.credit -= ticket.last_cost
            ticket.spent = spent
        for ticket in self.active:
            ticket.credit = min(0.0, ticket.credit + share)

    def _deliver(self, ticket: Ticket) -> None:
        if ticket.finished:  # handed out when its batch was done
            return
        job = ticket.job
        if job.pending:
            ticket.post("segments", list(job.pending))
            job.pending = []
        if job.done:
            ticket.finished = True
            self.active.remove(ticket)
            if job.error is not None:
                self.stats.failed += 1
                ticket.post("error", job.error)
            else:
                self.stats.completed += 1
                ticket.post("done", job.info)

    def snapshot(self) -> Dict[str, int]:
        """Counters for /health."""
        return dict(in_flight=self.in_flight, submitted=self.stats.submitted,
                    completed=self.stats.completed, failed=self.stats.failed, cancelled=self.stats.cancelled)


class Schedulers:
    """`workers` schedulers side by side on the one model, each a thread with its own runner and
    decoding stream, `max_batch / workers` rows and `threads / workers` intra-op threads; a new
    request goes to the one with the fewest requests in flight (the first on a tie). The face is
    a Scheduler's: `submit`, `cancel`, `in_flight`, `snapshot`, `start`, `stop`.

    Why: a round is not all parallel work. Between the matrix products of a decoder step run the
    Python of the stream, the logit rules and many small operations on one core while the round's
    other threads wait (one-off, two AVX2 cores, a saturating load with OpenMP's threads told to
    sleep when idle: the scheduler's second thread was busy 9.5 of 16.9 s); a decoder step gains
    only 1.5x from a second thread (`benchmarks/decoder_steps.py --threads 1,2`), the encoder 2x.
    Schedulers of one thread each keep every core on its own rounds, serial parts included:
    `benchmarks/serve_load.py --servers ours,ours-workers1` measures the difference (docs/serve.md).
    A job stays with its scheduler, whose fair share (above) it shares with that
    scheduler's other jobs; each scheduler gives what the command line gives."""

    def __init__(self, model, workers: Optional[int] = None, threads: Optional[int] = None,
                 max_batch: int = 16, **options):
        threads = threads or torch.get_num_threads()  # the calling thread's: the model was loaded with them
        if not workers:  # two where there are two CPU threads and rows to share (a GPU: one)
            on_cpu = getattr(getattr(model, "device", None), "type", "cpu") == "cpu"
            workers = 2 if on_cpu and threads >= 2 and max_batch >= 2 else 1
        workers = max(1, min(workers, max_batch, threads))

        def share(total, i):  # the remainder to the first ones
            return total // workers + (i < total % workers)

        self.workers = [Scheduler(model, share(max_batch, i), threads=share(threads, i) if workers > 1 else None,
                                  name=f"whisper-eas-scheduler-{i}", **options) for i in range(workers)]

    def start(self) -> None:
        before = torch.get_num_threads()
        for worker in self.workers:
            worker.start()
        for worker in self.workers:
            worker.threads_set.wait(10)
        # torch also keeps one count for threads that start later, which the schedulers' own
        # set: it goes back to what it was (each scheduler's thread keeps its own)
        torch.set_num_threads(before)

    def stop(self, timeout: Optional[float] = None) -> None:
        for worker in self.workers:
            worker.stop(timeout)

    def submit(self, job: Job, loop: asyncio.AbstractEventLoop) -> Ticket:
        return min(self.workers, key=lambda worker: worker.in_flight).submit(job, loop)

    def cancel(self, ticket: Ticket) -> None:
        ticket.scheduler.cancel(ticket)

    @property
    def in_flight(self) -> int:
        return sum(worker.in_flight for worker in self.workers)

    def snapshot(self) -> Dict[str, int]:
        counts = [worker.snapshot() for worker in self.workers]
        return {key: sum(c[key] for c in counts) for key in counts[0]}
