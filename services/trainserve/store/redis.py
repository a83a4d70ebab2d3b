"""Redis connections. Every store takes a plain `redis.Redis` (bytes in, bytes out)."""
from __future__ import annotations

from urllib.parse import quote, urlsplit, urlunsplit

import redis

from trainserve.core.errors import Unavailable

# The Redis password of the API and the dispatcher (`--redis-url` carries none): from the
# environment, so that it is in no command line (`ps`) and no log. Kubernetes sets it from
# a Secret; `trainserve up` from `<state>/run/redis-password`.
REDIS_PASSWORD_ENV = "TRAINSERVE_REDIS_PASSWORD"


def with_password(url: str, password: str) -> str:
    """`url` with `password` in it (`redis://:PASSWORD@host:port/db`); `url` unchanged when
    `password` is empty or `url` already names one."""
    if not password:
        return url
    parts = urlsplit(url)
    if parts.password or "@" in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=f":{quote(password, safe='')}@{parts.netloc}"))


def redact(url: str) -> str:
    """`url` fit for a log line: its password, if any, replaced by `***`."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    host = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


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
