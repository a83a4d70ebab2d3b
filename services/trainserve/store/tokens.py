"""Job API bearer tokens in Redis: only each token's SHA-256 is stored, with who it stands for.

Key `ts:tokens`, a hash: hex digest -> JSON {user, role, label, created_at}. A token is
named by its id, the first 12 hex digits of its digest. Key `ts:tokens:revoked`, a set: the
digests of revoked tokens, which are never registered again (the bootstrap admin token of an
API's `admin_token_file` stays revoked across restarts).
"""
from __future__ import annotations

import hashlib
import json
import re
import secrets
import time
from dataclasses import dataclass

from trainserve.core import errors
from trainserve.core.tenancy import Principal
from trainserve.store.keys import TOKENS, TOKENS_REVOKED

ROLES = ("user", "admin")
ID_LEN = 12
_USER = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")  # fullmatch: no trailing newline


@dataclass(frozen=True)
class TokenRecord:
    id: str
    user: str
    role: str
    label: str
    created_at: float


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_user(user: str, field: str = "user") -> None:
    if not _USER.fullmatch(user or ""):
        raise errors.InvalidArgument("lowercase letters, digits, '.', '_' and '-', starting "
                                     "with a letter or digit, at most 63 characters; got "
                                     f"{user!r}", field=field)


class TokenStore:
    def __init__(self, client):
        self.r = client

    def create(self, user: str, role: str = "user", label: str = "") -> tuple[str, TokenRecord]:
        """A new token for `user` (returned once) and its record."""
        check_user(user)
        if role not in ROLES:
            raise errors.InvalidArgument(f"must be one of {', '.join(ROLES)}, got {role!r}",
                                         field="role")
        if len(label) > 200:
            raise errors.InvalidArgument("at most 200 characters", field="label")
        token = "tsk_" + secrets.token_urlsafe(32)
        return token, self.add(digest(token), user, role, label)

    def add(self, token_digest: str, user: str, role: str, label: str = "") -> TokenRecord:
        """Record a token by its digest (e.g. the local stack's admin token, made elsewhere).
        A revoked token stays revoked: PermissionDenied."""
        if self.is_revoked(token_digest):
            raise errors.PermissionDenied(f"token {token_digest[:ID_LEN]} was revoked; make a "
                                          "new one")
        doc = {"user": user, "role": role, "label": label, "created_at": time.time()}
        self.r.hset(TOKENS, token_digest, json.dumps(doc))
        return _record(token_digest, doc)

    def is_revoked(self, token_digest: str) -> bool:
        return bool(self.r.sismember(TOKENS_REVOKED, token_digest))

    def lookup(self, token: str) -> Principal | None:
        """Who `token` stands for; None for an unknown token."""
        return self.lookup_digest(digest(token))  # no token in clear anywhere

    def lookup_digest(self, token_digest: str) -> Principal | None:
        """Who the token of `token_digest` (`digest(token)`) stands for; None if unknown."""
        raw = self.r.hget(TOKENS, token_digest)
        if raw is None:
            return None
        doc = json.loads(raw)
        return Principal(doc["user"], doc["role"])

    def list(self) -> list[TokenRecord]:
        items = self.r.hgetall(TOKENS)
        records = [_record(_text(k), json.loads(v)) for k, v in items.items()]
        return sorted(records, key=lambda t: t.created_at)

    def revoke(self, token_id: str) -> TokenRecord:
        """Remove the token whose id starts with `token_id` (at least 8 hex digits)."""
        if not re.fullmatch(r"[0-9a-f]{8,64}", token_id or ""):
            raise errors.InvalidArgument("a token id: 8 to 64 lowercase hex digits",
                                         field="id")
        keys = [k for k in map(_text, self.r.hkeys(TOKENS)) if k.startswith(token_id)]
        if not keys:
            raise errors.NotFound(f"no token {token_id}")
        if len(keys) > 1:
            raise errors.InvalidArgument(f"{token_id} matches {len(keys)} tokens; give more "
                                         "digits", field="id")
        raw = self.r.hget(TOKENS, keys[0])
        pipe = self.r.pipeline()  # MULTI: the token is never gone without being recorded
        pipe.sadd(TOKENS_REVOKED, keys[0])
        pipe.hdel(TOKENS, keys[0])
        pipe.execute()
        return _record(keys[0], json.loads(raw))


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _record(token_digest: str, doc: dict) -> TokenRecord:
    return TokenRecord(token_digest[:ID_LEN], doc["user"], doc["role"], doc.get("label", ""),
                       float(doc.get("created_at", 0)))
