"""The trusted side of the worker: start it sandboxed, feed it a job, collect its answers.

Walls, outermost first:
1. bubblewrap (`bwrap`), when it works here: no network, own PID/IPC namespaces, all capabilities
   dropped, tmpfs over /tmp, /home, /root, the course folder, the submissions and the output
   folder; only the Python install, the worker's files and a fresh scratch folder are visible.
   Without bwrap the worker still runs, with a logged warning.
2. an unprivileged user: when grading runs as root, the worker switches to KDGRADE_WORKER_USER
   (default `nobody`) before numpy, torch or a student cell loads, so it owns no file outside
   its scratch folder and the process limit binds (Linux exempts root from it). Checked once per
   grading session; where that user cannot read the Python install, the worker stays root and
   a warning says why.
3. rlimits: address space, CPU seconds, file size, process count (threads included).
4. one process per graded item (autograder/worker.py forks them before any student cell runs):
   an item's process runs its cell and the cells before it, and holds no correct implementation
   a cell could borrow (the grader's loss for train_student lives in train_student's alone).
5. an audit hook in each item's process (autograder/guard.py): no subprocess, socket, ctypes,
   kill, links; writes only in scratch; reads only from the Python install and scratch.
6. a wall-clock limit per case, for loading the cells, and per submission, enforced from here.

Answers come back on a private pipe as "<nonce> <json>" lines; anything else is ignored. A case
that hangs or kills the worker fails alone: the worker restarts for the cases still pending (a
function that does it twice loses its remaining cases at once, to bound the time). A cell that is
still the release stub (`raise NotImplementedError()`) is not run at all: its cases fail as if it
had raised, and a notebook of stubs only starts no worker.
"""
from __future__ import annotations

import ast
import dataclasses
import json
import logging
import os
import pwd
import re
import resource
import secrets
import select
import shutil
import signal
import site
import subprocess
import sys
import sysconfig
import tempfile
import time
from functools import lru_cache
from pathlib import Path

from autograder.protocol import BEGIN, CASE, DONE, ITEM, ITEM_DONE, LOADED, LOADING, error
from kdcourse.notebook import PREAMBLE

log = logging.getLogger(__name__)
HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WORKER_FILES = ("worker.py", "cases.py", "guard.py", "grader_loss.py", "protocol.py")


@dataclasses.dataclass
class Limits:
    """Resource limits of one submission's worker."""
    case_seconds: float = 20.0          # wall clock of one case (train cases take < 1 s)
    load_seconds: float = 60.0          # starting Python + torch and running the cells
    submission_seconds: float = 240.0   # everything, restarts included
    memory_bytes: int = 4 << 30         # RLIMIT_AS; torch alone maps about 1 GiB
    cpu_seconds: int = 300              # RLIMIT_CPU of one worker process
    file_bytes: int = 16 << 20          # RLIMIT_FSIZE: output log and scratch files
    strikes: int = 2                    # timeouts/crashes of one function before its rest fails


def _process_count(uid: int) -> int:
    count = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                count += os.stat(f"/proc/{entry}").st_uid == uid
            except OSError:
                pass
    return count


@lru_cache(maxsize=1)
def bwrap_works() -> bool:
    """True when bubblewrap is installed and can create its namespaces on this machine."""
    if os.environ.get("KDGRADE_NO_BWRAP"):
        return False
    exe = shutil.which("bwrap")
    if exe is None:
        log.warning("bubblewrap (bwrap) is not installed: the grading worker runs without its "
                    "namespace sandbox, with rlimits and audit hooks only. Install it with "
                    "`apt-get install bubblewrap`.")
        return False
    probe = subprocess.run([exe, "--ro-bind", "/", "/", "--unshare-net", "--cap-drop", "ALL",
                            "true"], capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        log.warning("bubblewrap cannot create namespaces here (%s): the grading worker runs with "
                    "rlimits and audit hooks only", probe.stderr.strip()[:200])
    return probe.returncode == 0


def _python_roots() -> list[str]:
    roots = {sys.prefix, sys.base_prefix, sysconfig.get_paths()["purelib"],
             sysconfig.get_paths()["platlib"], str(Path(sys.executable).resolve().parent.parent)}
    return sorted(r for r in roots if r)


def _import_roots() -> list[str]:
    """The folders the worker imports Python modules from (the standard library and
    site-packages): all that its audit hook lets it read, beside its scratch folder."""
    paths = sysconfig.get_paths()
    roots = {paths[key] for key in ("stdlib", "platstdlib", "purelib", "platlib")}
    roots.update(site.getsitepackages())
    roots.update(p for p in sys.path if p.endswith(".zip"))     # python311.zip, when present
    return sorted(r for r in roots if r)


def _inside(path: str, folders: list[str]) -> bool:
    """True when `path` lies strictly below one of `folders`."""
    return any(path.startswith(folder.rstrip("/") + "/") for folder in folders)


def _bwrap_command(scratch: str, hidden: list[str], worker_dir: str, switch_user: bool) -> list[str]:
    cmd = ["bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
           "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--cap-drop", "ALL",
           "--die-with-parent", "--new-session"]
    if switch_user:     # kept only for the worker's first step, which gives up root for good
        cmd += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    covered = [path for path in ["/tmp", "/var/tmp", "/home", "/root", "/dev/shm", *hidden]
               if os.path.isdir(path)]
    for path in covered:
        cmd += ["--tmpfs", path]
    made, bound = set(), []
    for root in _python_roots():        # the interpreter may live under a hidden folder
        if os.path.isdir(root):
            # folders bwrap makes on the way copy their modes (/root/.pyenv: 0700): open them
            for parent in map(str, reversed(Path(root).parents)):
                if _inside(parent, covered) and parent not in made and not _inside(parent, bound):
                    cmd += ["--perms", "0755", "--dir", parent]
                    made.add(parent)
            cmd += ["--ro-bind", root, root]
            bound.append(root)
            made.add(root)
    cmd += ["--dir", worker_dir]
    for name in WORKER_FILES:
        cmd += ["--ro-bind", str(HERE / name), f"{worker_dir}/{name}"]
    cmd += ["--bind", scratch, scratch, "--chdir", scratch, "--setenv", "HOME", scratch]
    return cmd


def worker_user() -> tuple[str, int, int] | None:
    """(name, uid, gid) the worker switches to, or None: it runs as the grader does.

    Only a root grader switches: to KDGRADE_WORKER_USER (an account, or UID:GID), by default
    `nobody`, or uid and gid 65534 (the kernel's overflow ids) where no account has that name.
    `root` keeps root."""
    if os.geteuid() != 0:
        return None
    name = os.environ.get("KDGRADE_WORKER_USER") or ""
    ids = re.fullmatch(r"(\d+):(\d+)", name)
    if ids:
        uid, gid = int(ids[1]), int(ids[2])
        return None if uid == 0 else (name, uid, gid)
    try:
        entry = pwd.getpwnam(name or "nobody")
    except KeyError:
        if not name:
            return ("uid 65534", 65534, 65534)
        raise SystemExit(f"KDGRADE_WORKER_USER={name!r} is not a user on this machine: name an "
                         "unprivileged account for the grading worker (default nobody), UID:GID, "
                         "or root to run student code as root") from None
    return None if entry.pw_uid == 0 else (entry.pw_name, entry.pw_uid, entry.pw_gid)


def _worker_command(sandboxed: bool, scratch: str, hidden: list[str],
                    user: tuple[str, int, int] | None) -> list[str]:
    """The worker's command line (in bwrap if `sandboxed`); hands `scratch` to `user` if given."""
    worker_dir = f"{tempfile.gettempdir()}/kdgrade-worker"
    script = f"{worker_dir}/worker.py" if sandboxed else str(HERE / "worker.py")
    cmd = [sys.executable, "-I", script]
    if user is not None:
        cmd += ["--as", f"{user[1]}:{user[2]}"]
        os.chown(scratch, user[1], 0)    # group root: bwrap, root without capabilities, enters it
        os.chmod(scratch, 0o770)
    if sandboxed:
        cmd = _bwrap_command(scratch, hidden, worker_dir, user is not None) + cmd
    return cmd


def _worker_env(scratch: str) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "HOME": scratch, "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1", "PYTHONHASHSEED": "0", "TMPDIR": scratch,
            "TORCHINDUCTOR_CACHE_DIR": f"{scratch}/inductor", "LC_ALL": "C.UTF-8"}


@lru_cache(maxsize=2)
def worker_identity(sandboxed: bool) -> tuple[str, int, int] | None:
    """worker_user(), once a probe worker (same sandbox) has switched to it and read the Python
    install and the worker's files; None (the worker keeps the grader's user) otherwise."""
    user = worker_user()
    if user is None:
        return None
    scratch = tempfile.mkdtemp(prefix="kdgrade-probe-")
    try:
        cmd = _worker_command(sandboxed, scratch, [str(REPO), os.getcwd()], user) + ["--probe"]
        probe = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=scratch,
                               env=_worker_env(scratch), stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError) as err:
        probe = subprocess.CompletedProcess(err, 1, "", str(err))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if probe.returncode == 0 and probe.stdout.split() == ["ok", str(user[1])]:
        return user
    log.warning("student code runs as root: the grading worker could not run as %s (%s). Make the "
                "Python install and %s readable to that user (chmod o+rx on their folders), or set "
                "KDGRADE_WORKER_USER to an account that can read them.", user[0],
                ((probe.stderr or probe.stdout).strip().splitlines() or [f"exit {probe.returncode}"])[-1][-300:],
                HERE)
    return None


def _set_limits(limits: Limits, processes: int):
    def apply():          # runs between fork and exec (maybe beside threads): no imports here
        for which, value in ((resource.RLIMIT_AS, limits.memory_bytes),
                             (resource.RLIMIT_CPU, limits.cpu_seconds),
                             (resource.RLIMIT_FSIZE, limits.file_bytes),
                             (resource.RLIMIT_NPROC, processes), (resource.RLIMIT_CORE, 0)):
            soft, hard = resource.getrlimit(which)
            resource.setrlimit(which, (value if hard == resource.RLIM_INFINITY else min(value, hard),
                                       hard))
    return apply


def _is_constant(node) -> bool:
    return isinstance(node, ast.Constant) or (isinstance(node, ast.UnaryOp)
                                              and isinstance(node.operand, ast.Constant))


def is_release_stub(source: str, name: str) -> bool:
    """True when the cell is only `def name(...)` with constant defaults, no annotations or
    decorators, and a body of docstring + `raise NotImplementedError()`: running it can do nothing
    but raise NotImplementedError. Parsed only, never run."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return False
    if len(tree.body) != 1 or not isinstance(tree.body[0], ast.FunctionDef):
        return False
    fn, args = tree.body[0], tree.body[0].args
    every_arg = [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]
    if (fn.name != name or fn.decorator_list or fn.returns is not None
            or any(a is not None and a.annotation is not None for a in every_arg)
            or not all(d is None or _is_constant(d) for d in [*args.defaults, *args.kw_defaults])):
        return False
    body = fn.body[1:] if (fn.body and isinstance(fn.body[0], ast.Expr)
                           and isinstance(fn.body[0].value, ast.Constant)) else fn.body
    if len(body) != 1 or not isinstance(body[0], ast.Raise) or body[0].cause is not None:
        return False
    exc = body[0].exc
    if isinstance(exc, ast.Call) and not exc.args and not exc.keywords:
        exc = exc.func
    return isinstance(exc, ast.Name) and exc.id == "NotImplementedError"


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
                   readable=_import_roots())
        cmd = _worker_command(sandboxed, self.scratch, hidden, user)
        processes = _process_count(user[1] if user else os.getuid()) + 256
        self.log_path = Path(self.scratch) / "output.log"
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT,
                env=_worker_env(self.scratch), cwd=self.scratch, pass_fds=(write_fd,),
                start_new_session=True, preexec_fn=_set_limits(limits, processes))
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
    stubs = {name for name, source in sources.items() if is_release_stub(source, name)}
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
                results[case["id"]] = _failure("Timeout", "the whole submission ran past the "
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
                results[case["id"]] = _failure("NoResult", "the grader got no result for this case")
            break
        how = ("did not finish within the time limit" if outcome == "timeout"
               else _exit_reason(run.proc.returncode))
        notes.append(f"worker stopped in phase {phase} ({how}); output tail: {tail[-300:]!r}")
        if phase == "load" and cell is not None:
            skip_cells.append(cell)
            load_errors[cell] = error("LoadFailure", f"running the cell {how}")
            fail_function(cell, {"error": load_errors[cell], "load": True})
        elif phase == "load":
            log.error("the grading worker could not start: %s", tail[-1000:])
            for case in pending:
                results[case["id"]] = _failure("GraderError", "the grader could not start; "
                                               "tell your instructor")
            break
        else:
            victim = current or next((c for c in pending if c["fn"] == item), pending[0])
            obs = _failure("Timeout" if outcome == "timeout" else "WorkerExit",
                           f"while running this case {how}")
            results[victim["id"]] = obs
            pending.remove(victim)
            strikes[victim["fn"]] = strikes.get(victim["fn"], 0) + 1
            if strikes[victim["fn"]] >= limits.strikes:
                fail_function(victim["fn"], obs)
    return {"results": results, "load_errors": load_errors, "sandbox": sandboxed,
            "worker_user": user[0] if user else "root" if os.geteuid() == 0 else None, "log": notes}
