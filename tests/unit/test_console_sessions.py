"""The console's server-side sessions: signing in makes a new id, sessions end when idle, at
their maximum age or when dropped (closing their SDK client), a flood of anonymous sessions
evicts no signed-in one, and CSRF tokens compare exactly."""
from __future__ import annotations

from trainserve.console.sessions import ANONYMOUS_IDLE_S, SessionStore


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Closable:
    closed = False

    def close(self):
        self.closed = True


def store(clock=None, **kwargs) -> SessionStore:
    return SessionStore(idle_s=100.0, max_s=1000.0, clock=clock or Clock(), **kwargs)


def test_signing_in_replaces_the_anonymous_session():
    sessions = store()
    anonymous = sessions.anonymous()
    assert not anonymous.signed_in and sessions.get(anonymous.id) is anonymous
    signed = sessions.sign_in(anonymous, "tok", "alice", "user")
    assert signed.id != anonymous.id and signed.csrf != anonymous.csrf
    assert sessions.get(anonymous.id) is None
    assert sessions.get(signed.id).token == "tok" and signed.user == "alice"


def test_a_session_ends_when_idle_and_at_its_maximum_age():
    clock = Clock()
    sessions = store(clock)
    s = sessions.sign_in(None, "tok", "alice", "user")
    for _ in range(9):
        clock.now += 99.0  # each request restarts the idle clock ...
        assert sessions.get(s.id) is s
    clock.now += 101.0
    assert sessions.get(s.id) is None  # ... until one comes too late
    s = sessions.sign_in(None, "tok", "alice", "user")
    while clock.now - s.created < 1000.0:
        clock.now += 90.0
        if clock.now - s.created <= 1000.0:
            assert sessions.get(s.id) is s
    assert sessions.get(s.id) is None  # never past max_s


def test_anonymous_sessions_expire_sooner():
    clock = Clock()
    sessions = SessionStore(idle_s=ANONYMOUS_IDLE_S * 10, max_s=1e9, clock=clock)
    anonymous = sessions.anonymous()
    clock.now += ANONYMOUS_IDLE_S + 1
    assert sessions.get(anonymous.id) is None


def test_dropping_a_session_closes_its_client():
    sessions = store()
    s = sessions.sign_in(None, "tok", "alice", "user")
    client = sessions.client(s, lambda token: Closable())
    assert sessions.client(s, lambda token: Closable()) is client  # made once
    sessions.drop(s.id)
    assert client.closed and sessions.get(s.id) is None


def test_a_flood_of_anonymous_sessions_signs_nobody_out():
    clock = Clock()
    sessions = store(clock, max_sessions=5)
    signed = sessions.sign_in(None, "tok", "alice", "user")
    for _ in range(50):
        clock.now += 1
        sessions.anonymous()
    assert len(sessions) <= 5 and sessions.get(signed.id) is signed


def test_csrf_tokens_compare_exactly():
    s = store().anonymous()
    assert s.csrf_ok(s.csrf)
    assert not s.csrf_ok(None) and not s.csrf_ok("") and not s.csrf_ok(s.csrf[:-1])
    assert not s.csrf_ok(s.csrf + "x")
