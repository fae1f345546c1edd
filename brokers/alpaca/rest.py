"""Alpaca's REST API through alpaca-py's ``TradingClient``, made safe for an event loop.

- **Off the loop, with our own deadline.** alpaca-py is synchronous and has no timeout:
  each call runs on this account's own small thread pool (a hung Alpaca holds those
  threads, never the loop's default executor) and its ``requests`` session gets a
  connect/read timeout, so a call ends by itself; ``asyncio.timeout`` bounds the wait.
  A client is used by one thread at a time (a ``requests.Session`` is not documented
  as thread-safe): clients are pooled.
- **Our retry policy, not alpaca-py's.** ``client._retry = 0`` turns off its own retries
  (it retries POSTs on 429/504 after a fixed 3 s, and a retried submit comes back as a
  duplicate). A 429 was not processed, so it is retried here after ``Retry-After``,
  the whole account paused meanwhile (``Pacing``). Everything uncertain (timeout,
  reset, 5xx, 504) is raised as ``Uncertain`` for the caller to resolve.
- **Exact decimals.** Bodies are plain JSON with decimal strings, sent through the
  client's generic ``post``/``patch``/``get``/``delete``; answers keep Alpaca's strings.
- **The secret** is only ever in the client's headers: never in a message, a log line
  or an exception raised from here (``requests`` errors name the URL, not the headers).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import queue
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import requests
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient

from brokers.alpaca.errors import NotSent, Refused, Unauthorized, Uncertain
from brokers.alpaca.pacing import Pacing, retry_after
from server.observability.histogram import LatencyHistogram

log = logging.getLogger(__name__)

PAPER_URL = "https://paper-api.alpaca.markets"
LIVE_URL = "https://api.alpaca.markets"


@dataclass(frozen=True, slots=True)
class Credentials:
    key_id: str
    secret: str = field(repr=False)
    live: bool = False
    #: Another server (tests: the fake Alpaca); None for Alpaca's own.
    base_url: str | None = None

    @property
    def rest_url(self) -> str:
        return self.base_url or (LIVE_URL if self.live else PAPER_URL)

    @property
    def stream_url(self) -> str:
        return self.rest_url.replace("https://", "wss://").replace("http://", "ws://") + "/stream"


@dataclass(frozen=True, slots=True)
class RestConfig:
    connect_timeout_s: float = 3.0
    read_timeout_s: float = 10.0
    #: Retries of a request answered 429 (each after its Retry-After).
    max_throttled: int = 6
    threads: int = 4


class RestStats:
    """Alpaca REST requests of this process, for /metrics: one instance shared by every
    account's client, so linking and unlinking accounts never makes a count go back.

    Each attempt is counted once by (method, outcome) and timed from the moment it
    leaves for the worker thread to its answer (waits for a pacing slot excluded).
    Outcomes: ``ok``, ``refused`` (4xx: Alpaca said no), ``unauthorized``,
    ``throttled`` (429, retried), ``uncertain`` (timeout, reset, 5xx: may have been
    processed), ``not_sent`` (never reached Alpaca), ``cancelled``, ``error`` (ours)."""

    __slots__ = ("attempts", "latency")

    def __init__(self) -> None:
        self.attempts: dict[tuple[str, str], int] = {}
        self.latency = LatencyHistogram()

    def record(self, method: str, outcome: str, elapsed_ns: int) -> None:
        key = (method, outcome)
        self.attempts[key] = self.attempts.get(key, 0) + 1
        self.latency.record_ns(elapsed_ns)


class AlpacaRest:
    def __init__(
        self,
        credentials: Credentials,
        pacing: Pacing,
        config: RestConfig | None = None,
        stats: RestStats | None = None,
    ) -> None:
        self.credentials = credentials
        self.pacing = pacing
        self.config = config or RestConfig()
        self.stats = stats if stats is not None else RestStats()
        self._clients: queue.SimpleQueue[TradingClient] = queue.SimpleQueue()
        self._executor = ThreadPoolExecutor(
            self.config.threads, thread_name_prefix=f"alpaca-{credentials.key_id[:6]}"
        )
        #: When the last request failed for want of Alpaca (None: the last one worked).
        self.failing_since: float | None = None
        self.requests = 0

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _client(self) -> TradingClient:
        try:
            return self._clients.get_nowait()
        except queue.Empty:
            pass
        creds = self.credentials
        client = TradingClient(
            creds.key_id, creds.secret, paper=not creds.live, url_override=creds.base_url
        )
        client._retry = 0  # no blind retries (see docs/alpaca.md)
        session = client._session
        session.request = functools.partial(  # type: ignore[method-assign]
            session.request, timeout=(self.config.connect_timeout_s, self.config.read_timeout_s)
        )
        return client

    async def call(self, method: str, path: str, data: Any = None) -> Any:
        """One request: paced, retried after 429s, errors sorted (``brokers.alpaca.errors``)."""
        loop = asyncio.get_running_loop()
        deadline_s = self.config.connect_timeout_s + self.config.read_timeout_s + 1.0
        for _ in range(self.config.max_throttled + 1):
            while True:  # a slot in Alpaca's limit (the pause after a 429 included)
                wait = self.pacing.delay(time.monotonic())
                if wait <= 0:
                    break
                await asyncio.sleep(wait)
            client = self._client()
            self.requests += 1
            outcome = "ok"
            started = time.monotonic_ns()
            try:
                async with asyncio.timeout(deadline_s):
                    result = await loop.run_in_executor(
                        self._executor, self._blocking, client, method, path, data
                    )
            except TimeoutError:
                outcome = "uncertain"
                self._failed()
                raise Uncertain(f"{method} {path}: no answer in {deadline_s:.0f} s") from None
            except _Throttled as throttled:
                outcome = "throttled"
                self._clients.put(client)
                self.failing_since = None
                self.pacing.pause(time.monotonic(), throttled.wait_s)
                log.warning("alpaca: 429 on %s %s; pausing %.1f s", method, path, throttled.wait_s)
                continue
            except (Uncertain, NotSent) as exc:
                outcome = "uncertain" if isinstance(exc, Uncertain) else "not_sent"
                self._failed()
                raise  # the client is dropped with its connection
            except Refused as exc:
                outcome = "unauthorized" if isinstance(exc, Unauthorized) else "refused"
                self._clients.put(client)
                self.failing_since = None
                raise
            except asyncio.CancelledError:
                outcome = "cancelled"  # by its caller (shutdown, an unlink)
                raise
            except BaseException:
                outcome = "error"  # a bug of ours: not Alpaca's answer
                raise
            finally:
                self.stats.record(method, outcome, time.monotonic_ns() - started)
            self._clients.put(client)
            self.failing_since = None
            return result
        raise NotSent(
            f"{method} {path}: still rate limited after {self.config.max_throttled} waits"
        )

    def _failed(self) -> None:
        if self.failing_since is None:
            self.failing_since = time.monotonic()

    @staticmethod
    def _blocking(client: TradingClient, method: str, path: str, data: Any) -> Any:
        verb = getattr(client, method.lower())
        try:
            return verb(path, data)
        except APIError as exc:
            raise _sorted(exc) from None
        except requests.exceptions.ConnectTimeout:
            raise NotSent(f"{method} {path}: could not connect in time") from None
        except requests.exceptions.Timeout:
            raise Uncertain(f"{method} {path}: read timeout") from None
        except requests.exceptions.ConnectionError as exc:
            if _refused(exc):
                raise NotSent(f"{method} {path}: connection refused") from None
            raise Uncertain(f"{method} {path}: connection lost") from None
        except requests.exceptions.RequestException as exc:
            raise Uncertain(f"{method} {path}: {type(exc).__name__}") from None


class _Throttled(Exception):
    def __init__(self, wait_s: float) -> None:
        self.wait_s = wait_s


def _refused(exc: requests.exceptions.ConnectionError) -> bool:
    """The TCP connection was never made (so the request never left)."""
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    text = f"{type(reason).__name__} {reason}"
    return "NewConnectionError" in text or "Connection refused" in text


def _sorted(exc: APIError) -> Exception:
    """An HTTP error as ours. The body is read defensively: a gateway's 403 has no code
    and a load balancer's 504 is HTML."""
    status = exc.status_code or 0
    response = exc.response
    headers = dict(response.headers) if response is not None else {}
    if status == 429:
        return _Throttled(retry_after(headers, time.time()))
    if status >= 500 or status in (408, 0):
        return Uncertain(f"HTTP {status}")
    code: int | None = None
    message = ""
    try:
        body = json.loads(str(exc))
        if isinstance(body, dict):
            raw_code = body.get("code")
            code = raw_code if isinstance(raw_code, int) else None
            message = str(body.get("message") or "")[:300]
    except ValueError:
        message = str(exc)[:120]
    if status in (401, 403) and (code is None or code == 40110000):
        return Unauthorized(status, code, message or "not authorized")
    return Refused(status, code, message)
