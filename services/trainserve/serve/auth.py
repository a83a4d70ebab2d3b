"""Bearer-token authentication of the inference endpoints (optional), and who each token is.

Tokens are never stored in clear: the token file lists the SHA-256 hex digest of each valid
token, one per line, with whom it belongs to:

    <digest> user=<name> [role=user|admin] [endpoints=<name>,<name>...]  # label

`#` starts a comment, blank lines are ignored. `role` is `user` by default. A user's token
reaches only the endpoints that user owns (the Deployment record's `user`); an admin's
reaches every endpoint. `endpoints=` narrows a token further to the endpoints listed. A line
with a bare digest (the file's format before tokens had owners) is an admin token, so files
written then keep working; `trainserve token list` shows such lines as `(legacy) admin`.
Anything else (an unknown key, a key twice, a malformed name, a token in clear) makes the
file unusable, naming the line.

A caller sends `Authorization: Bearer <token>` (REST) or the gRPC metadata `authorization:
Bearer <token>`. `TokenFile` reads the file when it is built (a missing or malformed file is
an error then) and again whenever its modification time, size or inode changes, looking at
most once a `period_s`, so tokens are added and revoked without a restart (and no request
costs a Redis round trip). A file that cannot be read or parsed on a later look accepts no
token until it is fixed (fail closed). Digests are compared with `hmac.compare_digest`,
against every listed digest.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from trainserve.core.errors import InvalidArgument, NotFound, Unauthenticated
from trainserve.core.spec import check_name
from trainserve.store.tokens import ROLES, check_user

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

_DIGEST = re.compile(r"[0-9a-f]{64}")
_KEYS = ("user", "role", "endpoints")
_FILE_HEADER = ("# trainserve inference tokens: the SHA-256 hex digest of each valid token, "
                "one per line, then whose it is:\n"
                "# <digest> user=<name> [role=user|admin] [endpoints=<name>,...]  # label\n")


def digest(token: str) -> str:
    """The SHA-256 hex digest of `token` (what the token file lists)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Grant:
    """One line of the token file: a token's digest and what it may reach.

    `user` owns the token (empty only on a legacy bare-digest line, which is an admin's);
    `endpoints` empty: every endpoint the role allows."""
    digest: str
    user: str
    role: str  # "user" or "admin"
    endpoints: frozenset[str] = frozenset()
    label: str = ""
    # A bare-digest line, from before tokens had owners (an admin token).
    legacy: bool = False

    def may_use(self, endpoint: str, owner: str) -> bool:
        """Whether this token may call endpoint `endpoint`, owned by `owner`: an admin's
        reaches every endpoint, a user's those the user owns; `endpoints` narrows both."""
        if self.endpoints and endpoint not in self.endpoints:
            return False
        # tenancy's rule (the owner or an admin); an unnamed user owns nothing, not "".
        return self.role == "admin" or (bool(self.user) and owner == self.user)

    def line(self) -> str:
        """This grant as a token-file line (no newline)."""
        fields = [self.digest]
        if self.user:
            fields.append(f"user={self.user}")
        if not self.legacy:
            fields.append(f"role={self.role}")
        if self.endpoints:
            fields.append("endpoints=" + ",".join(sorted(self.endpoints)))
        return " ".join(fields) + (f"  # {self.label}" if self.label else "")


def parse_line(line: str) -> Grant | None:
    """The grant of one token-file line, None for a blank or comment line; `ValueError`
    says what is wrong with it."""
    content, _, label = line.partition("#")
    words = content.split()
    if not words:
        return None
    d = words[0].lower()
    if not _DIGEST.fullmatch(d):
        raise ValueError("not a SHA-256 hex digest (64 hex characters; tokens are never "
                         "listed in clear)")
    if len(words) == 1:
        return Grant(d, "", "admin", label=label.strip(), legacy=True)
    found: dict[str, str] = {}
    for word in words[1:]:
        key, sep, value = word.partition("=")
        if not sep or key not in _KEYS:
            raise ValueError(f"{word!r} is not one of {', '.join(k + '=' for k in _KEYS)}")
        if key in found:
            raise ValueError(f"{key}= is given twice")
        found[key] = value
    return _grant(d, found, label.strip())


def _grant(d: str, found: dict[str, str], label: str) -> Grant:
    user, role = found.get("user", ""), found.get("role", "user")
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    if "user" in found or role == "user":
        _valid(check_user, user, "user")
    endpoints = found.get("endpoints")
    names = frozenset(endpoints.split(",")) if endpoints is not None else frozenset()
    for name in names:
        _valid(check_name, name, "endpoints")
    return Grant(d, user, role, names, label)


def _valid(check: Callable[[str, str], None], value: str, field: str) -> None:
    try:
        check(value, field)
    except InvalidArgument as exc:
        raise ValueError(exc.message) from None


def parse_tokens(text: str, source: str = "the token file") -> tuple[Grant, ...]:
    """The grants of a token file's text, one per digest; `ValueError` names a line that
    is malformed, or a digest listed twice with different grants."""
    found: dict[str, Grant] = {}
    for number, line in enumerate(text.splitlines(), 1):
        try:
            grant = parse_line(line)
        except ValueError as exc:
            raise ValueError(f"{source}, line {number}: {exc}") from None
        if grant is None:
            continue
        seen = found.setdefault(grant.digest, grant)
        if (seen.user, seen.role, seen.endpoints) != (grant.user, grant.role, grant.endpoints):
            raise ValueError(f"{source}, line {number}: digest {grant.digest[:12]} is listed "
                             "twice, with different grants")
    return tuple(found.values())


def parse_digests(text: str, source: str = "the token file") -> tuple[str, ...]:
    """The digests of a token file's text; `ValueError` names a line that is not valid."""
    return tuple(g.digest for g in parse_tokens(text, source))


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


def find(token: str | None, grants: Iterable[Grant]) -> Grant | None:
    """The grant of `token`, None if it has none; every digest is compared, in constant
    time each, as in `matches`."""
    presented = digest(token or "").encode()
    hit = None
    for g in grants:
        if hmac.compare_digest(presented, g.digest.encode()) and hit is None:
            hit = g
    return hit if token else None


class TokenFile:
    """The valid tokens: a token file, re-read when it changes (looked at once a `period_s`)."""

    def __init__(self, path: str | os.PathLike, period_s: float = 1.0,
                 clock: Callable[[], float] = time.monotonic):
        self.path = Path(path)
        self._period_s, self._clock = period_s, clock
        stamp = self._stamp()
        if stamp is None:
            raise FileNotFoundError(f"inference token file {self.path} does not exist")
        self._grants = self._read()
        self._seen, self._looked_at = stamp, clock()

    def digests(self) -> tuple[str, ...]:
        """The digests now valid (re-read first if the file changed)."""
        return tuple(g.digest for g in self.grants())

    def grants(self) -> tuple[Grant, ...]:
        """The grants now valid (re-read first if the file changed)."""
        now = self._clock()
        if now - self._looked_at >= self._period_s:
            self._looked_at = now
            stamp = self._stamp()
            if stamp != self._seen:
                self._seen = stamp
                try:
                    self._grants = self._read()
                    log.info("inference token file %s reloaded: %d token(s)", self.path,
                             len(self._grants))
                except (OSError, ValueError) as exc:
                    log.error("inference token file %s unusable, no token is accepted "
                              "until it is fixed: %s", self.path, exc)
                    self._grants = ()
        return self._grants

    def check(self, authorization: str | None) -> Grant:
        """The grant of the token in `authorization` (a header value, `Bearer <token>`);
        `Unauthenticated`, with one message whatever was wrong, if it names no valid one."""
        grant = find(bearer_token(authorization), self.grants())
        if grant is None:
            raise Unauthenticated(MESSAGE)
        return grant

    def _stamp(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size, st.st_ino

    def _read(self) -> tuple[Grant, ...]:
        grants = parse_tokens(self.path.read_text(), str(self.path))
        legacy = sum(g.legacy for g in grants)
        if legacy:
            log.warning("inference token file %s: %d line(s) with a bare digest are admin "
                        "tokens (reach every endpoint); give each a user= to scope it",
                        self.path, legacy)
        return grants


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


def create_token(path: str | os.PathLike, label: str = "", user: str = "", role: str = "",
                 endpoints: Iterable[str] = ()) -> tuple[str, str]:
    """A new random token of `user` (role `role`, "user" by default; an admin's needs no
    user), limited to `endpoints` when given, appended to the token file (created if
    needed); (token, digest). The token is not stored anywhere: show it to its owner once."""
    grant = _new_grant("", label, user, role, endpoints)
    path = ensure_file(path)
    token = secrets.token_urlsafe(32)
    grant = Grant(digest(token), grant.user, grant.role, grant.endpoints, grant.label)
    with open(path, "a") as f:
        f.write(grant.line() + "\n")  # one write: a reader never sees half a line for long
    return token, grant.digest


def _new_grant(d: str, label: str, user: str, role: str, endpoints: Iterable[str]) -> Grant:
    """The grant `create_token` writes, checked as the file's parser will check it."""
    if "\n" in label:
        raise InvalidArgument("must be one line", field="label")
    role = role or "user"
    if role not in ROLES:
        raise InvalidArgument(f"must be one of {', '.join(ROLES)}, got {role!r}", field="role")
    if user or role == "user":
        if not user:
            raise InvalidArgument("an inference token belongs to a user: name one (or give "
                                  "role admin)", field="user")
        check_user(user, "user")
    names = frozenset(endpoints)
    for name in names:
        check_name(name, "endpoints")
    return Grant(d, user, role, names, label.strip())


def list_tokens(path: str | os.PathLike) -> tuple[Grant, ...]:
    """The grants of a token file (`ValueError` if it is malformed)."""
    path = Path(path)
    try:
        return parse_tokens(path.read_text(), str(path))
    except FileNotFoundError:
        raise NotFound(f"no inference token file at {path}") from None


def _line_digest(line: str) -> str:
    words = line.split("#", 1)[0].split()
    return words[0].lower() if words else ""


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
    hits = [i for i, line in enumerate(lines) if _line_digest(line).startswith(prefix)]
    if not hits:
        raise NotFound(f"no token digest in {path} starts with {prefix}")
    if len({_line_digest(lines[i]) for i in hits}) > 1:
        raise InvalidArgument(f"{prefix} starts several digests; give more of it",
                              field="digest")
    removed = _line_digest(lines[hits[0]])
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("".join(line for i, line in enumerate(lines) if i not in hits))
    os.replace(tmp, path)
    return removed
