"""Picking TCP ports for servers that bind them a little later.

Ports are drawn at random below Linux's ephemeral range (32768-60999): the kernel hands
ephemeral ports to every outgoing connection and every bind to port 0 on the machine, so one
picked there can be taken by someone else before its server binds it (a Ray worker's
connection, say), while nothing takes a port below that range unless it asks for it by
number. A port counts as free when nothing listens on it on any address, IPv4 or IPv6.
"""
from __future__ import annotations

import collections
import random
import socket
import threading

# free_port's single ports and free_port_block's blocks come from ranges of their own, both
# above Ray's default worker port range (10002-19999), which `ray start` refuses to overlap.
SINGLE_RANGE = (20000, 26000)
BLOCK_RANGE = (26000, 32700)
_rng = random.SystemRandom()
# The ports this process handed out lately: a caller draws several before binding any (a
# stack's settings, a Ray node's six ports), and nothing listens on them yet, so without this
# two draws can meet. Bounded, because a long test session draws thousands.
_RECENT = 1024
_given: collections.deque[int] = collections.deque(maxlen=_RECENT)
_lock = threading.Lock()


def port_free(port: int) -> bool:
    """Whether nothing on this machine listens on `port` (any address) right now."""
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)  # both families at once
        try:
            s.bind(("::", port))
        except OSError:
            return False
    return True


def free_port(attempts: int = 200) -> int:
    """A port nothing listens on now and that this process has not handed out lately
    (another process may still take it before you do)."""
    with _lock:
        for _ in range(attempts):
            port = _rng.randrange(*SINGLE_RANGE)
            if port not in _given and port_free(port):
                _given.append(port)
                return port
    raise RuntimeError(f"no free port in {SINGLE_RANGE} after {attempts} tries")


def free_port_block(size: int, attempts: int = 200) -> int:
    """The first of `size` consecutive free ports, picked at random so that clusters
    started side by side get different blocks."""
    for _ in range(attempts):
        base = _rng.randrange(BLOCK_RANGE[0], BLOCK_RANGE[1] - size)
        if all(port_free(p) for p in range(base, base + size)):
            return base
    raise RuntimeError(f"no {size} consecutive free ports in {BLOCK_RANGE}")
