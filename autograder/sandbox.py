"""The trusted side of the worker: start it sandboxed, feed it a job, collect its answers.

The walls around the worker (bubblewrap, an unprivileged user, rlimits, one process per item,
an audit hook, time limits) are listed and built in `isolation.py`; the time limits are
enforced here, in `run_worker`.

Answers come back on a private pipe as "<nonce> <json>" lines; anything else is ignored. A case
that hangs or kills the worker fails alone: the worker restarts for the cases still pending (a
function that does it twice loses its remaining cases at once, to bound the time). A cell that is
still the release stub (`raise NotImplementedError()`) is not run at all: its cases fail as if it
had raised, and a notebook of stubs only starts no worker.
"""
from __future__ import annotations

import json
import logging
import os
import secrets
import select
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from autograder.isolation import (REPO, Limits, bwrap_works, import_roots, process_count, rlimits,
                                  worker_command, worker_env, worker_identity)
from autograder.protocol import (BEGIN, CASE, DONE, GRADER_ERROR, ITEM, ITEM_DONE, LOAD_FAILURE,
                                 LOADED, LOADING, NO_RESULT, TIMEOUT, WORKER_EXIT, error)
from kdcourse.notebook import PREAMBLE, is_stub_cell

log = logging.getLogger(__name__)


def stub_cells(sources: dict[str, str]) -> set[str]:
    """The graded cells that are still the release stub (`kdcourse.notebook.is_stub_cell`,
    compiled, never run): their cases fail as if they had raised, without running them."""
    return {name for name, source in sources.items() if is_stub_cell(source, name)}


STUB_ERROR = error("NotImplementedError", "",
                   ["NotImplementedError", "RuntimeError", "Exception", "BaseException", "object"])


def _failure(kind: str, message: str) -> dict:
    return {"error": error(kind, message)}


def _exit_reason(returncode) -> str:
    if returncode in (-signal.SIGXCPU, 128 + signal.SIGXCPU):
        return "it used up the CPU-time limit"
    if returncode in (-signal.SIGSEGV, -signal.SIGABRT, 128 + signal.SIGSEGV, 128 + signal.SIGABRT):
        return "the Python process crashed"
    return "the process exited (sys.exit/os._exit, or a limit was hit)"


class _Run:
    """One worker process and the parsing of its answers."""

    def __init__(self, job: dict, limits: Limits, hidden: list[str], sandboxed: bool,
                 user: tuple[str, int, int] | None):
        self.nonce = secrets.token_hex(16)
        self.scratch = tempfile.mkdtemp(prefix="kdgrade-")
        read_fd, write_fd = os.pipe()
        hidden = hidden + [str(REPO), os.getcwd()]
        job = dict(job, nonce=self.nonce, result_fd=write_fd, scratch=self.scratch,
                   readable=import_roots())
        cmd = worker_command(sandboxed, self.scratch, hidden, user)
        processes = process_count(user[1] if user else os.getuid()) + 256
        self.log_path = Path(self.scratch) / "output.log"
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT,
                env=worker_env(self.scratch), cwd=self.scratch, pass_fds=(write_fd,),
                start_new_session=True, preexec_fn=rlimits(limits, processes))
        os.close(write_fd)
        self.read_fd, self.buffer = read_fd, b""
        try:
            self.proc.stdin.write(json.dumps(job).encode("utf-8"))
            self.proc.stdin.close()
        except BrokenPipeError:
            pass

    def messages(self, deadline: float):
        """Yield answers until EOF (then None) or the deadline (then "timeout").

        Past the deadline, what already arrived is still read once (a busy grader thread must not
        turn a finished case into a timeout); a worker that keeps trickling bytes gains nothing."""
        grace = True
        while True:
            while b"\n" in self.buffer:
                line, self.buffer = self.buffer.split(b"\n", 1)
                nonce, _, payload = line.partition(b" ")
                if nonce.decode("ascii", "replace") != self.nonce:
                    continue                       # not from the worker's own writer: ignore
                try:
                    yield json.loads(payload)
                except ValueError:
                    continue
            wait = deadline() - time.monotonic()
            if wait <= 0 and not grace:
                yield "timeout"
                return
            grace = wait > 0
            if not select.select([self.read_fd], [], [], max(0.0, wait))[0]:
                yield "timeout"
                return
            chunk = os.read(self.read_fd, 1 << 20)
            if not chunk:
                yield None
                return
            if len(self.buffer) > 64 << 20:
                yield None                          # a flood on the pipe: treat as a crash
                return
            self.buffer += chunk

    def _wait_unreaped(self, timeout: float) -> None:
        """Wait up to `timeout` s for the worker to exit, leaving it a zombie (not reaped)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                if os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT):
                    return
            except ChildProcessError:
                return
            time.sleep(0.01)

    def close(self, finished: bool = False) -> str:
        """Kill the worker's whole session; return the tail of its output (for instructors).

        A worker that finished exits by itself right away: waiting for it first lets bwrap reap
        it, so its CPU time shows up in the grader's resource usage (benchmarks). The wait does
        not reap it: its pid, which names the process group killed next, is not free for reuse
        until after the kill."""
        if finished:
            self._wait_unreaped(timeout=2)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()
        os.close(self.read_fd)
        try:
            tail = self.log_path.read_bytes()[-2000:].decode("utf-8", "replace")
        except OSError:
            tail = ""
        shutil.rmtree(self.scratch, ignore_errors=True)
        return tail


def run_worker(sources: dict[str, str], cases: list[dict], *, order: list[str] | None = None,
               limits: Limits | None = None, hidden: list[str] = ()) -> dict:
    """Run `cases` against the student's `sources`; {"results": {case_id: obs}, "load_errors",
    "sandbox", "worker_user", "log"}; worker_user: whom the worker ran as, when grading runs as root.
    Never raises for anything the student code does."""
    limits = limits or Limits()
    order = list(order or sources)
    stubs = stub_cells(sources)
    results = {c["id"]: {"error": dict(STUB_ERROR), "raised": True} for c in cases if c["fn"] in stubs}
    pending = [c for c in cases if c["fn"] not in stubs]
    sandboxed = bwrap_works() if pending else None
    user = worker_identity(sandboxed) if pending else None
    load_errors, strikes, notes = {}, {}, []
    skip_cells: list[str] = list(stubs)
    end = time.monotonic() + limits.submission_seconds

    def fail_function(fn, obs):
        for case in [c for c in pending if c["fn"] == fn]:
            results[case["id"]] = obs
            pending.remove(case)

    while pending:
        if time.monotonic() >= end:
            for case in pending:
                results[case["id"]] = _failure(TIMEOUT, "the whole submission ran past the "
                                               "grading time limit before this case")
            break
        job = {"preamble": PREAMBLE, "sources": sources, "order": order,
               "skip_cells": skip_cells, "cases": pending}
        run = _Run(job, limits, [str(Path(p).resolve()) for p in hidden], sandboxed, user)
        phase, cell, current, outcome, item = "load", None, None, None, None
        phase_end = [time.monotonic() + limits.load_seconds]
        for msg in run.messages(lambda: min(phase_end[0], end)):
            if msg in ("timeout", None):
                outcome = msg or "died"
                break
            event = msg.get("event")
            if event in (ITEM, DONE) and item is not None:
                outcome = "died"              # the last item's process ended before its cases did
                break
            if event == ITEM:
                item, phase, cell = msg.get("name"), "load", None
                phase_end[0] = time.monotonic() + limits.load_seconds
            elif event == ITEM_DONE and msg.get("name") == item:
                item = None
            elif event == LOADING:
                cell = msg.get("name")
            elif event == LOADED:
                load_errors.update(msg.get("errors") or {})
                phase, phase_end[0] = "cases", time.monotonic() + limits.case_seconds
            elif event == BEGIN:
                current = next((c for c in pending if c["id"] == msg.get("id")), None)
                phase_end[0] = time.monotonic() + limits.case_seconds
            elif event == CASE and current is not None and msg.get("id") == current["id"]:
                results[current["id"]] = msg.get("obs") or {}
                pending.remove(current)
                current = None
            elif event == DONE:
                outcome = "done"
                break
        tail = run.close(finished=outcome == "done")
        if outcome == "done":
            for case in pending:
                results[case["id"]] = _failure(NO_RESULT, "the grader got no result for this case")
            break
        how = ("did not finish within the time limit" if outcome == "timeout"
               else _exit_reason(run.proc.returncode))
        notes.append(f"worker stopped in phase {phase} ({how}); output tail: {tail[-300:]!r}")
        if phase == "load" and cell is not None:
            skip_cells.append(cell)
            load_errors[cell] = error(LOAD_FAILURE, f"running the cell {how}")
            fail_function(cell, {"error": load_errors[cell], "load": True})
        elif phase == "load":
            log.error("the grading worker could not start: %s", tail[-1000:])
            for case in pending:
                results[case["id"]] = _failure(GRADER_ERROR, "the grader could not start; "
                                               "tell your instructor")
            break
        else:
            victim = current or next((c for c in pending if c["fn"] == item), pending[0])
            obs = _failure(TIMEOUT if outcome == "timeout" else WORKER_EXIT,
                           f"while running this case {how}")
            results[victim["id"]] = obs
            pending.remove(victim)
            strikes[victim["fn"]] = strikes.get(victim["fn"], 0) + 1
            if strikes[victim["fn"]] >= limits.strikes:
                fail_function(victim["fn"], obs)
    return {"results": results, "load_errors": load_errors, "sandbox": sandboxed,
            "worker_user": user[0] if user else "root" if os.geteuid() == 0 else None, "log": notes}
