"""One-time sign-in links of the local console.

`trainserve up` and `trainserve console` mint a code (`mint`) and print
`http://127.0.0.1:<port>/signin/<code>`; the console signs whoever opens it in as the local
admin, once (`redeem`). A code is a random 32-byte string; what is stored is a file named by
its SHA-256 in `<state>/run/console-signin/` (folder 0700, file 0600), holding its expiry, so
the folder's listing reveals no code. Whoever may read the admin token file may mint one: the
link gives no more than that file does.
"""
from __future__ import annotations

import hashlib
import os
import re
import secrets
import time
from pathlib import Path

from trainserve.core import locations

CODE_TTL_S = 600.0
SIGNIN_PATH = "/signin/"
_CODE = re.compile(r"[A-Za-z0-9_-]{32,64}")


def codes_dir(state_dir: Path) -> Path:
    """Where the pending codes of the stack in `state_dir` wait."""
    return locations.run_dir(state_dir) / "console-signin"


def mint(state_dir: Path, ttl_s: float = CODE_TTL_S, now: float | None = None) -> str:
    """A new one-time code, valid for `ttl_s` seconds (expired codes are removed)."""
    now = time.time() if now is None else now
    folder = codes_dir(state_dir)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    _prune(folder, now)
    code = secrets.token_urlsafe(32)
    fd = os.open(folder / _digest(code), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(repr(now + ttl_s))
    return code


def redeem(state_dir: Path, code: str, now: float | None = None) -> bool:
    """Whether `code` is a pending, unexpired code; it is used up either way. Of concurrent
    redeemers exactly one wins: the one whose unlink removes the file."""
    if not _CODE.fullmatch(code or ""):
        return False
    path = codes_dir(state_dir) / _digest(code)
    try:
        expires = float(path.read_text())
        path.unlink()
    except (OSError, ValueError):
        return False
    return (time.time() if now is None else now) < expires


def new_signin_url(console_url: str, state_dir: Path) -> str:
    """A one-time sign-in link of the console at `console_url` (e.g. http://127.0.0.1:8270)
    of the stack in `state_dir`: `<console_url>/signin/<a new code>`."""
    return console_url + SIGNIN_PATH + mint(state_dir)


def _digest(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


def _prune(folder: Path, now: float) -> None:
    for path in folder.iterdir():
        try:
            if float(path.read_text()) <= now:
                path.unlink()
        except (OSError, ValueError):
            continue
