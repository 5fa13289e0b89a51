"""How the grading worker is walled in: its command line (bubblewrap and its mounts), the user it
runs as, its rlimits and environment. The run loop that starts it and reads its answers is
`sandbox.py`; what runs inside is `worker.py` and `guard.py`.

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
6. a wall-clock limit per case, for loading the cells, and per submission (`Limits`), enforced
   by sandbox.run_worker.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import pwd
import re
import resource
import shutil
import site
import subprocess
import sys
import sysconfig
import tempfile
from functools import lru_cache
from pathlib import Path

log = logging.getLogger("autograder.sandbox")   # the instructor's log names the sandbox as a whole
HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WORKER_FILES = ("worker.py", "cases.py", "guard.py", "grader_loss.py", "protocol.py")


@dataclasses.dataclass
class Limits:
    """Resource limits of one submission's worker."""
    case_seconds: float = 20.0          # wall clock of one case (correct code needs a small part of it)
    load_seconds: float = 60.0          # starting Python + torch and running the cells
    submission_seconds: float = 240.0   # everything, restarts included
    memory_bytes: int = 4 << 30         # RLIMIT_AS; torch's own mappings take a good part of it
    cpu_seconds: int = 300              # RLIMIT_CPU of one worker process
    file_bytes: int = 16 << 20          # RLIMIT_FSIZE: output log and scratch files
    strikes: int = 2                    # timeouts/crashes of one function before its rest fails


def process_count(uid: int) -> int:
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


def import_roots() -> list[str]:
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


def worker_command(sandboxed: bool, scratch: str, hidden: list[str],
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


def worker_env(scratch: str) -> dict[str, str]:
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
        cmd = worker_command(sandboxed, scratch, [str(REPO), os.getcwd()], user) + ["--probe"]
        probe = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=scratch,
                               env=worker_env(scratch), stdin=subprocess.DEVNULL)
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


def rlimits(limits: Limits, processes: int):
    def apply():          # runs between fork and exec (maybe beside threads): no imports here
        for which, value in ((resource.RLIMIT_AS, limits.memory_bytes),
                             (resource.RLIMIT_CPU, limits.cpu_seconds),
                             (resource.RLIMIT_FSIZE, limits.file_bytes),
                             (resource.RLIMIT_NPROC, processes), (resource.RLIMIT_CORE, 0)):
            soft, hard = resource.getrlimit(which)
            resource.setrlimit(which, (value if hard == resource.RLIM_INFINITY else min(value, hard),
                                       hard))
    return apply

