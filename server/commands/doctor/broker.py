"""The broker: with Alpaca credentials, one account request through alpaca-py (the
adapter's own REST client, timeouts and error sorting) against the configured URL."""

from __future__ import annotations

from brokers.alpaca.errors import NotSent, Refused, Unauthorized, Uncertain
from brokers.alpaca.pacing import Pacing
from brokers.alpaca.rest import AlpacaRest, Credentials, RestConfig
from server.commands.doctor.finding import Finding, fail, ok
from server.settings import Settings

AREA = "broker"


async def check(settings: Settings, timeout_s: float) -> Finding:
    if settings.alpaca_api_key_id is None or settings.alpaca_api_secret_key is None:
        return ok(AREA, "paper broker (no ALPACA_API_KEY_ID)")
    credentials = Credentials(
        settings.alpaca_api_key_id.reveal(),
        settings.alpaca_api_secret_key.reveal(),
        live=settings.alpaca_live,
        base_url=settings.alpaca_base_url,
    )
    live = settings.alpaca_live
    where = f"Alpaca {'live' if live else 'paper'} at {credentials.rest_url}"
    config = RestConfig(
        connect_timeout_s=timeout_s, read_timeout_s=timeout_s, max_throttled=0, threads=1
    )
    rest = AlpacaRest(credentials, Pacing(), config)
    try:
        account = await rest.call("GET", "/account")
    except Unauthorized as exc:
        return fail(AREA, f"{where} refused the credentials ({exc.status})")
    except Refused as exc:
        return fail(AREA, f"{where} answered {exc.status}: {exc.message}")
    except (NotSent, Uncertain) as exc:
        return fail(AREA, f"{where} unreachable: {exc}")
    finally:
        rest.close()
    status = str(account.get("status", "?"))
    blocked = [
        flag.replace("_", " ")
        for flag in ("account_blocked", "trading_blocked")
        if account.get(flag)
    ]
    if status != "ACTIVE" or blocked:
        return fail(
            AREA, f"{where}: account {status}{'; ' + ', '.join(blocked) if blocked else ''}"
        )
    return ok(AREA, f"{where}: account ACTIVE ({account.get('currency', 'USD')})")
