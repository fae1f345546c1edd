"""Redis, when ``REDIS_URL`` is set: does it answer PING, and is it recent enough for
sharded pub/sub (``SPUBLISH``/``SSUBSCRIBE``, Redis 7.0)."""

from __future__ import annotations

from redis.asyncio import Redis

from server.commands.doctor.finding import Finding, describe_error, fail, ok
from server.settings import Settings
from server.storage.database import redact_dsn

AREA = "redis"
#: Sharded pub/sub arrived in Redis 7.0.
MIN_VERSION = (7, 0)


async def check(settings: Settings, timeout_s: float) -> Finding:
    if settings.redis_url is None:
        return ok(AREA, "REDIS_URL unset: in-process bus and limits (one server process only)")
    url = settings.redis_url.reveal()
    where = redact_dsn(url)
    client = Redis.from_url(
        url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s, retry_on_timeout=False
    )
    try:
        await client.ping()
        info = await client.info("server")
    except Exception as exc:
        return fail(AREA, f"{where}: {describe_error(exc)}")
    finally:
        await client.aclose()
    version = str(info.get("redis_version", "0"))
    parts = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
    if parts < MIN_VERSION:
        return fail(
            AREA,
            f"{where} is Redis {version}: sharded pub/sub (SPUBLISH) needs "
            f"{'.'.join(map(str, MIN_VERSION))} or later",
        )
    return ok(AREA, f"{where} answers PING (Redis {version})")
