"""Inside the worker: resource limits and an audit hook that student code cannot remove.

The audit hook is the second wall (bubblewrap is the first): it refuses subprocesses, sockets,
ctypes, signals to other processes, links, writes outside the scratch folder and reads of the
course folders. Everything it uses is bound at install time (default arguments), so monkeypatching
`os`, `os.path` or `builtins` afterwards does not change what it checks.
"""
from __future__ import annotations

import os
import resource
import sys

ALWAYS_BLOCKED = ("subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn",
                  "os.fork", "os.forkpty", "pty.spawn", "os.startfile", "os.kill", "os.killpg",
                  "signal.pthread_kill", "os.link", "os.symlink", "ctypes.", "socket.", "_winapi.",
                  "os.chroot", "os.setuid", "webbrowser.open", "urllib.Request", "http.client.")
PATH_WRITE_EVENTS = ("os.remove", "os.rmdir", "os.rename", "os.chmod", "os.chown", "os.truncate",
                     "os.mkdir", "shutil.rmtree", "os.utime", "shutil.move", "shutil.copyfile")
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def set_rlimits(memory_bytes: int, cpu_seconds: int, file_bytes: int, processes: int) -> None:
    """Address space, CPU seconds, largest written file, processes; never above the hard limit."""
    for which, value in ((resource.RLIMIT_AS, memory_bytes), (resource.RLIMIT_CPU, cpu_seconds),
                         (resource.RLIMIT_FSIZE, file_bytes), (resource.RLIMIT_NPROC, processes),
                         (resource.RLIMIT_CORE, 0)):
        soft, hard = resource.getrlimit(which)
        value = value if hard == resource.RLIM_INFINITY else min(value, hard)
        resource.setrlimit(which, (value, hard))


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


def install_audit_hook(scratch: str, hidden: list[str], readable: list[str]) -> None:
    """Refuse dangerous events from now on. `hidden` roots are unreadable unless under `readable`."""
    scratch_root = _normalize(scratch, "/").rstrip("/") + "/"
    hidden_roots = tuple(_normalize(p, "/").rstrip("/") + "/" for p in hidden)
    readable_roots = tuple(_normalize(p, "/").rstrip("/") + "/" for p in readable) + (scratch_root,)
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
            if full.startswith(hidden_roots) and not full.startswith(readable_roots):
                raise _PermissionError(f"the grader does not allow reading {path}")

    sys.addaudithook(hook)
