"""What an experiment records about where it ran (git, Python, host, command, packages).

Captured once per process (cached) because listing installed distributions and asking git
take tens of milliseconds; every value is a string so it fits ``experiments.system``
(``Map(String, String)``). Failures (no git, not a repository) leave the key out.
"""
from __future__ import annotations

import functools
import getpass
import os
import platform
import shlex
import socket
import subprocess
import sys
from importlib import metadata


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=3, cwd=os.getcwd())
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def packages_summary() -> str:
    """Sorted ``name==version`` of installed distributions, comma-separated."""
    seen: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata.get("Name") if dist.metadata else None
        if name and name.lower() not in seen:
            seen[name.lower()] = f"{name}=={dist.version}"
    return ",".join(seen[k] for k in sorted(seen))


@functools.lru_cache(maxsize=1)
def system_info() -> dict[str, str]:
    info: dict[str, str] = {
        "python_version": platform.python_version(),
        "python_executable": sys.executable,
        "host": socket.gethostname(),
        "os": platform.platform(),
        "command": shlex.join(sys.argv) if sys.argv else "",
        "cwd": os.getcwd(),
        "pid": str(os.getpid()),
    }
    try:
        info["user"] = getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in some containers
        pass
    commit = _git("rev-parse", "HEAD")
    if commit:
        info["git_commit"] = commit
        status = _git("status", "--porcelain", "--untracked-files=no")
        if status is not None:
            info["git_dirty"] = "true" if status else "false"
        branch = _git("rev-parse", "--abbrev-ref", "HEAD")
        if branch:
            info["git_branch"] = branch
        origin = _git("config", "--get", "remote.origin.url")
        if origin:
            info["git_origin"] = origin
    try:
        info["packages"] = packages_summary()
    except Exception:  # noqa: BLE001
        pass
    return info
