"""Bearer-token authentication of the inference endpoints (optional).

Tokens are never stored in clear: the token file holds the SHA-256 hex digest of each valid
token, one per line; `#` starts a comment, blank lines are ignored. A caller sends
`Authorization: Bearer <token>` (REST) or the gRPC metadata `authorization: Bearer <token>`.

`TokenFile` reads the file when it is built (a missing or malformed file is an error then)
and again whenever its modification time, size or inode changes, looking at most once a
`period_s`, so tokens are added and revoked without a restart. A file that cannot be read or
parsed on a later look accepts no token until it is fixed (fail closed). Digests are compared
with `hmac.compare_digest`, against every listed digest.

`create_token` and `revoke` edit such a file (mode 0600); `trainserve token` calls them.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
import time
from pathlib import Path
from typing import Callable, Iterable

from trainserve.errors import InvalidArgument, NotFound, Unauthenticated

log = logging.getLogger(__name__)

# The variable the SDK and the CLI read the token from.
TOKEN_ENV = "TRAINSERVE_INFERENCE_TOKEN"
# One message for a missing and a wrong token: an answer must not tell them apart.
MESSAGE = "missing or invalid bearer token"
# The value of the `WWW-Authenticate` header of a 401.
CHALLENGE = "Bearer"
HEADER = "authorization"
# Paths that stay open so that orchestrators can probe (server liveness and readiness).
OPEN_PATHS = frozenset({"/v2/health/live", "/v2/health/ready"})

_DIGEST = re.compile(r"^[0-9a-f]{64}$")
_FILE_HEADER = ("# trainserve inference tokens: the SHA-256 hex digest of each valid token, "
                "one per line.\n")


def digest(token: str) -> str:
    """The SHA-256 hex digest of `token` (what the token file lists)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def parse_digests(text: str, source: str = "the token file") -> tuple[str, ...]:
    """The digests of a token file's text; `ValueError` names a line that is not one."""
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip().lower()
        if not line:
            continue
        if not _DIGEST.match(line):
            raise ValueError(f"{source}, line {number}: not a SHA-256 hex digest (64 hex "
                             "characters; tokens are never listed in clear)")
        found.append(line)
    return tuple(dict.fromkeys(found))


def bearer_token(value: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` value, None if it is not one."""
    if not value:
        return None
    scheme, _, token = value.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def matches(token: str | None, digests: Iterable[str]) -> bool:
    """Whether `token`'s digest is one of `digests`, compared in constant time each (every
    digest is compared, so the time does not depend on which one matched)."""
    presented = digest(token or "").encode()
    ok = False
    for d in digests:
        ok |= hmac.compare_digest(presented, d.encode())
    return ok and bool(token)


class TokenFile:
    """The valid tokens: a token file, re-read when it changes (looked at once a `period_s`)."""

    def __init__(self, path: str | os.PathLike, period_s: float = 1.0,
                 clock: Callable[[], float] = time.monotonic):
        self.path = Path(path)
        self._period_s, self._clock = period_s, clock
        stamp = self._stamp()
        if stamp is None:
            raise FileNotFoundError(f"inference token file {self.path} does not exist")
        self._digests = self._read()
        self._seen, self._looked_at = stamp, clock()

    def digests(self) -> tuple[str, ...]:
        """The digests now valid (re-read first if the file changed)."""
        now = self._clock()
        if now - self._looked_at >= self._period_s:
            self._looked_at = now
            stamp = self._stamp()
            if stamp != self._seen:
                self._seen = stamp
                try:
                    self._digests = self._read()
                    log.info("inference token file %s reloaded: %d token(s)", self.path,
                             len(self._digests))
                except (OSError, ValueError) as exc:
                    log.error("inference token file %s unusable, no token is accepted "
                              "until it is fixed: %s", self.path, exc)
                    self._digests = ()
        return self._digests

    def check(self, authorization: str | None) -> None:
        """Pass if `authorization` (a header value) is `Bearer <a valid token>`, else raise
        `Unauthenticated`, with one message whatever was wrong."""
        if not matches(bearer_token(authorization), self.digests()):
            raise Unauthenticated(MESSAGE)

    def _stamp(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size, st.st_ino

    def _read(self) -> tuple[str, ...]:
        return parse_digests(self.path.read_text(), str(self.path))


def token_auth(token_file: str) -> TokenFile | None:
    """The authenticator of a `ServeConfig.inference_token_file`; None (open) when unset."""
    return TokenFile(token_file) if token_file else None


def grpc_authorization(context) -> str | None:
    """The `authorization` metadata value of a gRPC call (grpc.aio or Serve's context)."""
    metadata = getattr(context, "invocation_metadata", None)
    for key, value in (metadata() or ()) if metadata else ():
        if key.lower() == HEADER:
            return value.decode() if isinstance(value, bytes) else value
    return None


# ------------------------------------------------------------------------- the token file


def ensure_file(path: str | os.PathLike) -> Path:
    """Create the token file (mode 0600, no token yet) unless it exists; its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path
    with os.fdopen(fd, "w") as f:
        f.write(_FILE_HEADER)
    return path


def create_token(path: str | os.PathLike, label: str = "") -> tuple[str, str]:
    """A new random token, its digest appended to the token file (created if needed);
    (token, digest). The token is not stored anywhere: show it to its owner once."""
    if "\n" in label:
        raise InvalidArgument("must be one line", field="label")
    path = ensure_file(path)
    token = secrets.token_urlsafe(32)
    d = digest(token)
    with open(path, "a") as f:
        f.write(f"{d}{'  # ' + label if label else ''}\n")
    return token, d


def revoke(path: str | os.PathLike, prefix: str) -> str:
    """Remove the digest that starts with `prefix` (at least 8 hex characters) from the token
    file; the digest removed."""
    prefix = prefix.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{8,64}", prefix):
        raise InvalidArgument("give at least the first 8 hex characters of the token's "
                              "digest", field="digest")
    path = Path(path)
    try:
        lines = path.read_text().splitlines(keepends=True)
    except FileNotFoundError:
        raise NotFound(f"no inference token file at {path}") from None
    hits = [i for i, line in enumerate(lines)
            if line.split("#", 1)[0].strip().lower().startswith(prefix)]
    if not hits:
        raise NotFound(f"no token digest in {path} starts with {prefix}")
    if len({lines[i].split("#", 1)[0].strip().lower() for i in hits}) > 1:
        raise InvalidArgument(f"{prefix} starts several digests; give more of it",
                              field="digest")
    removed = lines[hits[0]].split("#", 1)[0].strip().lower()
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("".join(line for i, line in enumerate(lines) if i not in hits))
    os.replace(tmp, path)
    return removed
