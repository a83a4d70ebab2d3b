"""Redis connections. Every store takes a plain `redis.Redis` (bytes in, bytes out)."""
from __future__ import annotations

import redis

from trainserve.errors import Unavailable

PREFIX = "ts:"


def connect(url: str) -> redis.Redis:
    """A connection pool to `url`; retries a dropped connection once before failing."""
    return redis.Redis.from_url(
        url, socket_connect_timeout=5, socket_keepalive=True, health_check_interval=30,
        retry_on_error=[redis.ConnectionError], max_connections=256)


def check(client: redis.Redis) -> None:
    """Raise `Unavailable` if Redis does not answer."""
    try:
        client.ping()
    except redis.RedisError as exc:
        raise Unavailable(f"redis unreachable: {exc}") from exc


def ensure_group(client: redis.Redis, stream: str, group: str) -> None:
    """Create consumer group `group` on `stream` (and the stream) unless it exists."""
    try:
        client.xgroup_create(stream, group, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise
