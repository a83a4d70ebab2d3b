"""Every Redis key of trainserve, spelled once.

Keys start with `PREFIX`. A module that reads or writes a key imports its name or its
builder from here; nothing else spells a key.
"""
from __future__ import annotations

PREFIX = "ts:"

# The dispatcher's heartbeat: set with a short expiry and renewed while a dispatcher is up.
DISPATCHER_READY = PREFIX + "dispatcher:ready"
