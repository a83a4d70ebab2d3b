"""The console's sessions, kept on the server: the browser holds only a random session id
(an `HttpOnly; SameSite=Strict` cookie); the bearer token it stands for never leaves the
server. Every session, signed in or not, has its own CSRF token, which every state-changing
form carries back (the sign-in form too: a session is made for it first).

A session ends after `idle_s` without a request, `max_s` after it began, at sign-out, or when
the job API stops accepting its token. Signing in makes a new session (a new id): an id
planted before sign-in is worth nothing after it.
"""
from __future__ import annotations

import hmac
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

COOKIE = "ts_session"
ANONYMOUS_IDLE_S = 900.0   # a sign-in form left open this long must be reloaded
MAX_SESSIONS = 10_000      # the oldest go first past this (anonymous ones are cheap to make)


@dataclass
class Session:
    id: str
    csrf: str
    created: float
    seen: float
    token: str | None = None         # None: not signed in
    user: str = ""
    role: str = ""
    auth_enabled: bool = True
    # The SDK client of this session's token, made on first use (`SessionStore.client`).
    client: Any = field(default=None, repr=False)

    @property
    def signed_in(self) -> bool:
        return self.token is not None

    def csrf_ok(self, presented: str | None) -> bool:
        return bool(presented) and hmac.compare_digest(presented.encode(), self.csrf.encode())


class SessionStore:
    """Session id -> `Session`, thread-safe (the SDK calls run on worker threads)."""

    def __init__(self, idle_s: float, max_s: float, clock: Callable[[], float] = time.monotonic,
                 max_sessions: int = MAX_SESSIONS):
        self.idle_s, self.max_s, self.max_sessions = idle_s, max_s, max_sessions
        self._clock = clock
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._sessions)

    def get(self, session_id: str | None) -> Session | None:
        """The live session of `session_id` (its idle clock restarted), else None."""
        with self._lock:
            session = self._sessions.get(session_id or "")
            if session is None:
                return None
            now = self._clock()
            if self._expired(session, now):
                self._remove(session.id)
                return None
            session.seen = now
            return session

    def anonymous(self) -> Session:
        """A new session that is not signed in (it carries the sign-in form's CSRF token)."""
        return self._add(None)

    def sign_in(self, old: Session | None, token: str, user: str, role: str,
                auth_enabled: bool = True) -> Session:
        """A new signed-in session for `token`; `old` (the anonymous one) ends."""
        if old is not None:
            self.drop(old.id)
        return self._add(token, user=user, role=role, auth_enabled=auth_enabled)

    def drop(self, session_id: str) -> None:
        with self._lock:
            self._remove(session_id)

    def client(self, session: Session, factory: Callable[[str], Any]) -> Any:
        """The session's SDK client (made by `factory(token)` on first use)."""
        with self._lock:
            if session.client is None:
                session.client = factory(session.token or "")
            return session.client

    def _add(self, token: str | None, **who: Any) -> Session:
        now = self._clock()
        session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), now, now,
                          token, **who)
        with self._lock:
            self._evict(now)
            self._sessions[session.id] = session
        return session

    def _expired(self, session: Session, now: float) -> bool:
        idle = self.idle_s if session.signed_in else ANONYMOUS_IDLE_S
        return now - session.seen > idle or now - session.created > self.max_s

    def _evict(self, now: float) -> None:
        """Drop expired sessions, then, while the store is full, the least recently seen
        (anonymous ones first: a flood of sign-in forms must not sign anyone out)."""
        for session in [s for s in self._sessions.values() if self._expired(s, now)]:
            self._remove(session.id)
        while len(self._sessions) >= self.max_sessions:
            oldest = min(self._sessions.values(), key=lambda s: (s.signed_in, s.seen))
            self._remove(oldest.id)

    def _remove(self, session_id: str) -> None:
        session = self._sessions.pop(session_id, None)
        if session is not None and session.client is not None:
            _close_quietly(session.client)


def _close_quietly(client: Any) -> None:
    try:
        client.close()
    except Exception:  # noqa: BLE001 - a channel that will not close is gone anyway
        pass
