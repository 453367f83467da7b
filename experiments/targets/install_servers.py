"""Make the virtual environments the third-party example servers run from: one per server, pinned.

    python experiments/targets/install_servers.py              # all three (what `make servers` runs)
    python experiments/targets/install_servers.py litserve     # one or more, by name

Each server gets its own environment, because its pins clash with the harness's (kserve pins
grpcio, protobuf and pandas; litserve its own FastAPI and uvicorn). The spec files beside this script
name it with a relative ``venv: ../../.venvs/<name>``; ``.venvs/<name>`` at the repository root is a
link to where the environment really is, ``<store>/<name>-<hash of its pins>`` with the store
``~/.cache/harness/servers`` (``$HARNESS_SERVERS_STORE`` to move it), so every clone on a machine
(a CI run's fresh clone included) shares one install, and changing a pin makes a new one.

Idempotent and safe to run concurrently: an environment is complete once its ``.complete`` marker
(its pins) is written, last; a per-environment file lock makes concurrent runs install it once,
the others waiting for it. The servers install in parallel. A failure is one line per server on
stderr (``cannot reach the package registry`` when pip could not), exit 1; the full pip output is
kept in ``<store>/<name>-<hash>.log``.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINKS = ROOT / ".venvs"
STORE = Path(os.environ.get("HARNESS_SERVERS_STORE") or Path.home() / ".cache" / "harness" / "servers")
MARKER = ".complete"
PIP_TIMEOUT_S = 900
PIP_NETWORK_ARGS = ["--retries", "2", "--timeout", "30"]  # an unreachable registry fails within minutes, not hours

# The pins of each server's environment: the server and what its example imports.
SERVERS: dict[str, tuple[str, ...]] = {
    "kserve": ("kserve==0.21.0", "numpy==2.4.6"),
    "litserve": ("litserve==0.2.19",),
    "fastapi": ("fastapi==0.163.2", "uvicorn==0.54.0", "numpy==2.4.6"),
}

# what pip prints when it cannot reach an index (it retries, then finds "no versions")
_UNREACHABLE_SIGNS = ("Failed to establish a new connection", "Failed to resolve", "Temporary failure in name resolution",
                      "Name or service not known", "Network is unreachable", "Connection refused", "ConnectTimeout",
                      "Read timed out", "ReadTimeoutError", "NewConnectionError", "Max retries exceeded")


class InstallError(Exception):
    """A server's environment could not be made; the message is one line, naming the server."""


def pins_hash(name: str) -> str:
    """Return the short hash of a server's pins and this Python's version (what its environment depends on)."""
    text = "\n".join((*SERVERS[name], f"python{sys.version_info.major}.{sys.version_info.minor}"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def venv_dir(name: str) -> Path:
    """Return where the environment of server ``name`` is kept (in the store, not the link)."""
    return STORE / f"{name}-{pins_hash(name)}"


def _complete(venv: Path, name: str) -> bool:
    marker = venv / MARKER
    return marker.is_file() and marker.read_text() == "\n".join(SERVERS[name]) and (venv / "bin" / "python").exists()


def _why(output: str, code: int) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for line in lines:
        sign = next((sign for sign in _UNREACHABLE_SIGNS if sign in line), None)
        if sign is not None:
            errno, host = re.search(r"\[Errno [^\]]*\][^\"')]*", line), re.search(r"host='([^']*)'", line)
            detail = errno.group(0).strip() if errno else line[line.index(sign):][:160]
            return f"cannot reach the package registry ({host.group(1) + ': ' if host else ''}{detail})"
    missing = next((line for line in lines if "No matching distribution found" in line), None)
    if missing is not None:
        return f"the package registry has no such release ({missing[:160]})"
    return f"pip exited {code}: {(lines[-1] if lines else 'no output')[:200]}"


def _install(name: str, venv: Path) -> None:
    log = venv.with_suffix(".log")
    shutil.rmtree(venv, ignore_errors=True)  # a half-made environment (no marker) is made again
    with open(log, "w") as out:
        made = subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], stdout=out,
                              stderr=subprocess.STDOUT, timeout=120)
        if made.returncode != 0:
            raise InstallError(f"{name}: python -m venv {venv} exited {made.returncode} (see {log})")
        pip = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--quiet",
               "--disable-pip-version-check", *PIP_NETWORK_ARGS, *SERVERS[name]]
        try:
            run = subprocess.run(pip, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=PIP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise InstallError(f"{name}: pip install did not finish within {PIP_TIMEOUT_S} s (see {log})") from None
        out.write(run.stdout)
    if run.returncode != 0:
        raise InstallError(f"{name}: {_why(run.stdout, run.returncode)} (full output: {log})")
    (venv / MARKER).write_text("\n".join(SERVERS[name]))  # last: only now is it complete


def _link(name: str, venv: Path) -> Path:
    link = LINKS / name
    if link.exists() and not link.is_symlink():
        if _complete(link, name):
            return link  # a complete environment made there by hand: use it
        raise InstallError(f"{name}: {link} is a directory this script did not make; remove it and run again")
    if not (link.is_symlink() and Path(os.readlink(link)) == venv):
        LINKS.mkdir(exist_ok=True)
        temporary = LINKS / f".{name}.{os.getpid()}"
        temporary.unlink(missing_ok=True)
        temporary.symlink_to(venv, target_is_directory=True)
        os.replace(temporary, link)  # atomic: a concurrent reader sees the old link or the new one
    return link


def ensure(name: str) -> tuple[Path, float]:
    """Make server ``name``'s environment unless it is complete; return its link (``.venvs/<name>``) and the
    seconds spent installing (0 when it was there). Raises InstallError (one line) when it cannot be made."""
    if name not in SERVERS:
        raise InstallError(f"{name}: unknown server; choose one of {', '.join(SERVERS)}")
    venv = venv_dir(name)
    spent = 0.0
    if not _complete(venv, name):
        STORE.mkdir(parents=True, exist_ok=True)
        with open(STORE / f".{venv.name}.lock", "a") as lock:  # concurrent runs install it once
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not _complete(venv, name):
                start = time.monotonic()
                _install(name, venv)
                spent = time.monotonic() - start
    return _link(name, venv), spent


def ensure_all(names: list[str] | None = None, jobs: int | None = None) -> dict[str, tuple[Path, float] | InstallError]:
    """Make the environments of ``names`` (default: every server) in parallel; return each one's
    `ensure` result, or the InstallError that stopped it (one server's failure never stops the others)."""
    names = list(names or SERVERS)

    def one(name: str) -> tuple[Path, float] | InstallError:
        try:
            return ensure(name)
        except InstallError as exc:
            return exc
        except (OSError, subprocess.SubprocessError) as exc:
            return InstallError(f"{name}: {exc}")

    with ThreadPoolExecutor(max_workers=jobs or len(names)) as pool:
        return dict(zip(names, pool.map(one, names)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("servers", nargs="*", metavar="SERVER", help=f"which to make (default: all of {', '.join(SERVERS)})")
    parser.add_argument("--jobs", type=int, default=None, help="installs at once (default: all)")
    args = parser.parse_args(argv)
    unknown = [name for name in args.servers if name not in SERVERS]
    if unknown:
        parser.error(f"unknown server {unknown[0]!r}; choose from {', '.join(SERVERS)}")
    failed = 0
    for name, result in ensure_all(args.servers, args.jobs).items():
        if isinstance(result, InstallError):
            print(f"install_servers: {result}", file=sys.stderr)
            failed += 1
        else:
            link, spent = result
            done = f"installed in {spent:.0f} s" if spent else "already installed"
            print(f"{name}: {done}: {link.relative_to(ROOT)} -> {os.path.realpath(link)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
