"""Node.js peers for tests (independent OIDC implementations from npm).

Each peer lives in its own folder under ``tests/peers/`` with a ``package.json`` and a
``package-lock.json`` that pins every version. :func:`node_peer` installs it with ``npm ci``
the first time (the npm registry is reachable on this machine kind and in CI) and returns the
folder; without ``node``/``npm`` the test skips, or fails under ``STEPGUARD_REQUIRE_ALL=1``.
"""

from __future__ import annotations

import fcntl
import shutil
import subprocess
from pathlib import Path

from support.services import unavailable

__all__ = ["PEERS", "node_peer"]

PEERS = Path(__file__).resolve().parent.parent / "peers"


def node_peer(name: str) -> Path:
    """The installed peer folder ``tests/peers/<name>`` (``npm ci`` once, under a file lock so
    concurrent test processes do not install twice)."""
    folder = PEERS / name
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        unavailable("Node.js and npm")
    assert npm is not None
    with (folder / ".install.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / "node_modules").is_dir():
            done = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=folder,
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            if done.returncode != 0:
                unavailable(f"npm ci in {folder} ({done.stderr.strip()[-500:]})")
    return folder
