"""Inside the worker: leaving root, and an audit hook that student code cannot remove.

A root grader's worker first leaves root (`start`, `become_user`): the sandbox's second wall.
The audit hook is the fourth (after bubblewrap, the user and rlimits): it refuses subprocesses,
sockets, ctypes, sqlite, signals to other processes, links, writes outside the scratch folder and
reads of anything but the Python install and the scratch folder. Everything it uses is bound at install time (default arguments), so
monkeypatching `os`, `os.path` or `builtins` afterwards does not change what it checks.
"""
from __future__ import annotations

import os
import sys

ALWAYS_BLOCKED = ("subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn",
                  "os.fork", "os.forkpty", "pty.spawn", "os.startfile", "os.kill", "os.killpg",
                  "signal.pthread_kill", "os.link", "os.symlink", "ctypes.", "socket.", "_winapi.",
                  "os.chroot", "os.setuid", "webbrowser.open", "urllib.Request", "http.client.",
                  "sqlite3.")
PATH_WRITE_EVENTS = ("os.remove", "os.rmdir", "os.rename", "os.chmod", "os.chown", "os.truncate",
                     "os.mkdir", "shutil.rmtree", "os.utime", "shutil.move", "shutil.copyfile")
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
PR_SET_NO_NEW_PRIVS = 38
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


def _capabilities() -> dict[str, int]:
    """This process's capability sets from /proc/self/status: {"CapEff": bits, ...}."""
    with open("/proc/self/status") as status:
        rows = [line.split(":") for line in status if line.startswith("Cap")]
    return {name: int(value, 16) for name, value in rows}


def become_user(uid: int, gid: int) -> None:
    """Leave root for good: groups, real/effective/saved ids, every capability set, then
    no_new_privs (no setuid binary can give root back). Called first in a root grader's worker,
    before numpy, torch or any student code loads. Exits with a message if any trace of root is
    left, so a half-dropped worker never runs a cell."""
    import ctypes                       # the audit hook that blocks ctypes is not installed yet
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    libc = ctypes.CDLL(None, use_errno=True)
    header = (ctypes.c_uint32 * 2)(_LINUX_CAPABILITY_VERSION_3, 0)
    no_capabilities = (ctypes.c_uint32 * 6)()     # effective, permitted, inheritable; twice
    if libc.capset(header, no_capabilities) != 0:  # the inheritable set survives setresuid
        raise SystemExit(f"grading worker: capset failed: errno {ctypes.get_errno()}")
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise SystemExit(f"grading worker: prctl(NO_NEW_PRIVS) failed: errno {ctypes.get_errno()}")
    caps = _capabilities()
    if (os.getresuid() != (uid,) * 3 or os.getresgid() != (gid,) * 3 or os.getgroups()
            or any(caps.get(name) for name in ("CapInh", "CapPrm", "CapEff", "CapAmb"))):
        raise SystemExit(f"grading worker: still privileged after switching to {uid}:{gid} "
                         f"(ids {os.getresuid()}, groups {os.getgroups()}, capabilities {caps})")


def probe_imports() -> None:
    """What the worker needs, readable by this user (worker.py and this module are running
    already): numpy, and the files of `cases` and torch (not imported: torch takes seconds, and
    this runs once per grading session before any worker)."""
    import importlib.util
    import numpy  # noqa: F401
    origins = {}
    for name in ("cases", "grader_loss", "torch"):
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            raise SystemExit(f"grading worker: {name} is not importable")
        with open(spec.origin, "rb"):
            origins[name] = spec.origin
    torch_lib = os.path.join(os.path.dirname(origins["torch"]), "lib")
    for name in os.listdir(torch_lib)[:1]:
        with open(os.path.join(torch_lib, name), "rb"):
            pass


def start(argv: list[str]) -> None:
    """The worker's first step: `--as UID:GID` switches user (grading runs as root); `--probe`
    then checks what the worker needs is readable, says "ok" and exits."""
    if "--as" in argv:
        uid, gid = (int(part) for part in argv[argv.index("--as") + 1].split(":"))
        become_user(uid, gid)
    if "--probe" in argv:
        probe_imports()
        print("ok", os.getuid(), flush=True)
        raise SystemExit(0)


def _normalize(path: str, cwd: str) -> str:
    """Absolute, '..'-free path by string operations only (no patchable helpers)."""
    if not path.startswith("/"):
        path = cwd + "/" + path
    parts = []
    for part in path.split("/"):
        if part == "..":
            if parts:
                parts.pop()
        elif part and part != ".":
            parts.append(part)
    return "/" + "/".join(parts)


def install_audit_hook(scratch: str, readable: list[str]) -> None:
    """Refuse dangerous events from now on. Files open for reading only under `readable` (the
    Python install the worker imports from) and the scratch folder; writes only in scratch: an
    allow-list, so other submissions, earlier grading outputs, homes, the course and the rest of
    /tmp are refused whether or not bubblewrap hides them."""
    scratch_root = _normalize(scratch, "/").rstrip("/") + "/"
    readable_roots = tuple(_normalize(p, "/").rstrip("/") + "/" for p in readable) + (
        scratch_root, "/dev/null/")
    write_ok = (scratch_root, "/dev/null/")

    def hook(event, args, _str=str, _isinstance=isinstance, _bytes=bytes, _getcwd=os.getcwd,
             _norm=_normalize, _blocked=ALWAYS_BLOCKED, _path_events=PATH_WRITE_EVENTS,
             _flags=WRITE_FLAGS, _PermissionError=PermissionError, _any=any, _int=int):
        for prefix in _blocked:
            if event.startswith(prefix):
                raise _PermissionError(f"the grader does not allow {event}")
        if event == "open" or event in _path_events:
            path = args[0] if args else None
            if _isinstance(path, _bytes):
                path = path.decode("utf-8", "replace")
            if not _isinstance(path, _str):
                return                               # an already-open file descriptor
            full = _norm(path, _getcwd()) + "/"
            writing = event != "open"
            if event == "open":
                mode, flags = args[1], args[2]
                writing = (_isinstance(mode, _str) and _any(c in mode for c in "wax+")) or (
                    _isinstance(flags, _int) and flags & _flags)
            if writing and not full.startswith(write_ok):
                raise _PermissionError(f"the grader only allows writing in the scratch folder, not {path}")
            if not full.startswith(readable_roots):
                raise _PermissionError(f"the grader does not allow reading {path}")

    sys.addaudithook(hook)
