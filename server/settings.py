"""The one configuration object, built once from the environment.

``Settings.from_env(os.environ)`` is the only place that reads environment
variables; everything else receives a ``Settings``. Every bad value is reported
with the variable's name and why it is wrong (``SettingsError``), so start-up can
print one clear line per problem and exit with status 2.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from server.market.symbols import SYMBOL_PATTERN

T = TypeVar("T")

DEFAULT_SIMULATED_SYMBOLS = ("AAPL", "MSFT", "AMZN", "GOOG", "NVDA", "TSLA", "META", "SPY")
DEFAULT_POLYGON_WS_URL = "wss://socket.polygon.io/stocks"
DEFAULT_POLYGON_REST_URL = "https://api.polygon.io"
#: The key sent when POLYGON_WS_URL is given without POLYGON_API_KEY: a local replay
#: accepts any key.
LOCAL_REPLAY_KEY = "local"
#: Claude Sonnet 4.6: quality, speed and price ($3 / $15 per million tokens) suited to an
#: analysis that streams to a waiting user. ANTHROPIC_MODEL picks another.
DEFAULT_ANTHROPIC_MODEL = "claude-sonnet-4-6"


class SettingsError(ValueError):
    """One or more settings are invalid. ``problems`` has one line per variable."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class Environment(StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


class MarketSource(StrEnum):
    SIMULATED = "simulated"
    POLYGON = "polygon"


@dataclass(frozen=True, slots=True)
class Secret:
    """A value that must never be printed. ``repr``/``str`` show only whether it is set."""

    value: str = field(repr=False)

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def reveal(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class PolygonEndpoint:
    """``POLYGON_WS_URL`` split the way polygon-api-client wants it."""

    feed: str  # "host:port" or "host"
    secure: bool
    market: str  # path, e.g. "stocks"

    @property
    def url(self) -> str:
        return f"{'wss' if self.secure else 'ws'}://{self.feed}/{self.market}"


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8000
    environment: Environment = Environment.DEVELOPMENT
    data_dir: Path = Path.home() / ".local" / "share" / "tickgraph"
    symbols: tuple[str, ...] = DEFAULT_SIMULATED_SYMBOLS
    log_level: str = "INFO"
    log_json: bool = False
    #: "auto" (uvloop when installed), "uvloop" or "asyncio".
    event_loop: str = "auto"

    database_url: Secret | None = None
    redis_url: Secret | None = None
    #: With REDIS_URL: where the other processes reach this one (the leader's address
    #: is how followers relay to it); empty means http://<host>:<port>.
    advertise_url: str = ""
    #: With REDIS_URL: the leader's lease; a dead leader is replaced within about this.
    leader_ttl_ms: int = 3000

    market_source: MarketSource = MarketSource.SIMULATED
    polygon_api_key: Secret | None = None
    polygon_endpoint: PolygonEndpoint = PolygonEndpoint("socket.polygon.io", True, "stocks")
    #: Polygon REST for history (indicator warm-up, gap backfill); ``None``: not used.
    polygon_rest_url: str | None = None
    simulated_rate: float = 50.0  # events/s per symbol, on average
    simulated_seed: int | None = None

    alpaca_api_key_id: Secret | None = None
    alpaca_api_secret_key: Secret | None = None
    #: The operator's account is a live one (``ALPACA_LIVE``); paper by default.
    alpaca_live: bool = False
    #: Another Alpaca-compatible server for REST and ``/stream`` (tests: the fake).
    alpaca_base_url: str | None = None
    #: 32 bytes (base64) that encrypt users' linked broker secrets at rest.
    secrets_key: Secret | None = None
    anthropic_api_key: Secret | None = None
    # Analyses (server.analysis): the model, where its API is (a local fake in tests),
    # and the bounds of one analysis.
    anthropic_model: str = DEFAULT_ANTHROPIC_MODEL
    anthropic_base_url: str | None = None
    #: Per network step (connect; the longest gap between two reads of the stream).
    anthropic_timeout_s: float = 30.0
    #: The whole analysis, from the request to the last token.
    analysis_timeout_s: float = 120.0
    anthropic_max_tokens: int = 2048
    #: Retries inside the SDK (0: the client sees retryAfter and decides).
    anthropic_max_retries: int = 0
    analysis_cache_ttl_s: float = 60.0
    analysis_max_running: int = 2

    stale_after_s: float = 10.0
    trades_kept: int = 1000
    #: Market-data screening (docs/market-data.md). ``feed_live``: the source is known
    #: to be live, so event times are judged against the receive time; None: decided
    #: from the source (the simulated market and a non-loopback Polygon URL are live).
    feed_live: bool | None = None
    live_clock_tolerance_s: float = 5.0
    replay_clock_tolerance_s: float = 60.0
    late_tolerance_s: float = 3600.0
    price_band_percent: float = 50.0
    #: 1-second bars are stored for this many days (0: not stored).
    second_bars_days: int = 7
    #: Graceful shutdown writes every pending firing; it gives up only after the
    #: database made no progress for this long.
    drain_stall_timeout_s: float = 30.0
    #: Trading (docs/trading.md): what a new paper account starts with, the paper
    #: broker's fees and slippage, and how far from the last trade a limit price may be
    #: before it needs ``confirm: true``.
    paper_starting_cash: Decimal = Decimal(100_000)
    paper_commission_per_share: Decimal = Decimal(0)
    paper_slippage_bps: int = 0
    order_price_band_percent: Decimal = Decimal(10)
    #: Sessions orders work in: "nyse" (New York's, holidays and early closes), or
    #: "continuous" (always open: the simulated market); None: decided by the source.
    trading_calendar: str | None = None
    feed_backoff_initial_s: float = 0.5
    feed_backoff_max_s: float = 30.0
    ws_init_timeout_s: float = 5.0
    ws_trade_queue: int = 1000
    graphiql: bool = True
    #: The live trading board at ``/`` (it uses only the public API, so it is on in
    #: every environment; off leaves ``/`` to GraphiQL or a JSON index).
    board: bool = True
    #: Prometheus metrics at ``/metrics``; with a token, scrapes must present it as a
    #: bearer credential. Off by default in production unless a token is set (the
    #: figures say who trades how much).
    metrics: bool = True
    metrics_token: Secret | None = None

    # Users, tokens and the hardened surface.
    allow_anonymous: bool = True
    jwt_private_keys: Secret | None = None
    access_token_ttl_s: int = 900
    refresh_token_ttl_s: int = 30 * 86_400
    ws_allowed_origins: tuple[str, ...] = ()
    ws_max_subscriptions: int = 100
    ws_max_message_bytes: int = 65_536
    ws_compression: bool = False
    max_request_bytes: int = 1_048_576
    #: Proxies whose X-Forwarded-For / X-Forwarded-Proto (and X-Request-ID, as the
    #: parent of our correlation id) are believed (IPs or CIDR networks). Empty: the
    #: client address is the socket's peer, always.
    trusted_proxies: tuple[str, ...] = ()
    #: One log line per HTTP request; ``access_log_probes`` adds /healthz, /readyz and
    #: /metrics, which probes and scrapers call every few seconds.
    access_log: bool = True
    access_log_probes: bool = False

    #: Scheduled housekeeping (server.housekeeping), run once per deployment.
    housekeeping: bool = True
    token_purge_interval_s: float = 3600.0
    #: Age of the JWT key file's active key that triggers a rotation; 0: never.
    key_rotation_interval_s: float = 30 * 86_400.0
    bar_prune_interval_s: float = 3600.0

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str],
        overrides: Mapping[str, str] | None = None,
        *,
        labels: Mapping[str, str] | None = None,
    ) -> Settings:
        """Build settings from ``environ``; ``overrides`` (same variable names) win.

        Raises ``SettingsError`` listing every invalid variable at once. ``labels``
        renames variables in those messages: a value given as ``--port`` is reported
        as ``--port``, not as the variable it overrides.
        """
        env = dict(environ)
        if overrides:
            env.update({k: v for k, v in overrides.items() if v is not None})
        reader = _Reader(env, labels or {})
        defaults = cls()

        environment = reader.get("TICKGRAPH_ENV", _enum(Environment), defaults.environment)
        polygon_key = reader.secret("POLYGON_API_KEY")
        metrics_token = reader.get("TICKGRAPH_METRICS_TOKEN", _metrics_token, None, echo=False)
        ws_url_given = bool(env.get("POLYGON_WS_URL", "").strip())
        endpoint = reader.get("POLYGON_WS_URL", _polygon_endpoint, defaults.polygon_endpoint)
        # A local replay accepts any key, so a URL alone is enough to select Polygon.
        source = (
            MarketSource.POLYGON
            if polygon_key is not None or ws_url_given
            else MarketSource.SIMULATED
        )
        if source is MarketSource.POLYGON and polygon_key is None:
            polygon_key = Secret(LOCAL_REPLAY_KEY)
        # History comes from Polygon REST only with a real key (a local replay has none),
        # unless a REST URL is given explicitly (e.g. a local fake).
        rest_default = (
            DEFAULT_POLYGON_REST_URL
            if env.get("POLYGON_API_KEY", "").strip() and not _is_loopback(endpoint.feed)
            else None
        )

        settings = cls(
            host=reader.get("TICKGRAPH_HOST", _host, defaults.host),
            port=reader.get("TICKGRAPH_PORT", _int_range(0, 65535), defaults.port),
            environment=environment,
            data_dir=reader.get("TICKGRAPH_DATA_DIR", _path, defaults.data_dir),
            symbols=reader.get("TICKGRAPH_SYMBOLS", _symbols, defaults.symbols),
            log_level=reader.get("TICKGRAPH_LOG_LEVEL", _log_level, defaults.log_level),
            log_json=reader.get("TICKGRAPH_LOG_JSON", _bool, environment is Environment.PRODUCTION),
            event_loop=reader.get("TICKGRAPH_EVENT_LOOP", _event_loop, "auto"),
            database_url=reader.get(
                "DATABASE_URL", _url(("postgres", "postgresql")), None, echo=False
            ),
            redis_url=reader.get("REDIS_URL", _url(("redis", "rediss", "unix")), None, echo=False),
            advertise_url=reader.get("TICKGRAPH_ADVERTISE_URL", _http_url, ""),
            leader_ttl_ms=reader.get(
                "TICKGRAPH_LEADER_TTL_MS", _int_range(500, 60_000), defaults.leader_ttl_ms
            ),
            market_source=source,
            polygon_api_key=polygon_key,
            polygon_endpoint=endpoint,
            polygon_rest_url=reader.get("POLYGON_REST_URL", _http_url, rest_default),
            simulated_rate=reader.get(
                "TICKGRAPH_SIM_RATE", _float_range(0.1, 100_000.0), defaults.simulated_rate
            ),
            simulated_seed=reader.get("TICKGRAPH_SIM_SEED", _int_range(0, 2**63 - 1), None),
            alpaca_api_key_id=reader.secret("ALPACA_API_KEY_ID"),
            alpaca_api_secret_key=reader.secret("ALPACA_API_SECRET_KEY"),
            alpaca_live=reader.get("ALPACA_LIVE", _bool, False),
            alpaca_base_url=reader.get("ALPACA_BASE_URL", _http_url, None),
            secrets_key=reader.get("TICKGRAPH_SECRETS_KEY", _secrets_key, None, echo=False),
            anthropic_api_key=reader.secret("ANTHROPIC_API_KEY"),
            anthropic_model=reader.get("ANTHROPIC_MODEL", _model_id, defaults.anthropic_model),
            anthropic_base_url=reader.get("ANTHROPIC_BASE_URL", _base_url, None),
            anthropic_timeout_s=reader.get(
                "ANTHROPIC_TIMEOUT", _float_range(0.1, 600.0), defaults.anthropic_timeout_s
            ),
            analysis_timeout_s=reader.get(
                "TICKGRAPH_ANALYSIS_TIMEOUT", _float_range(1.0, 3600.0), defaults.analysis_timeout_s
            ),
            anthropic_max_tokens=reader.get(
                "ANTHROPIC_MAX_TOKENS", _int_range(256, 64_000), defaults.anthropic_max_tokens
            ),
            anthropic_max_retries=reader.get(
                "ANTHROPIC_MAX_RETRIES", _int_range(0, 5), defaults.anthropic_max_retries
            ),
            analysis_cache_ttl_s=reader.get(
                "TICKGRAPH_ANALYSIS_CACHE_TTL",
                _float_range(0.0, 86_400.0),
                defaults.analysis_cache_ttl_s,
            ),
            analysis_max_running=reader.get(
                "TICKGRAPH_ANALYSIS_MAX_RUNNING", _int_range(1, 100), defaults.analysis_max_running
            ),
            stale_after_s=reader.get(
                "TICKGRAPH_STALE_AFTER", _float_range(0.1, 86_400.0), defaults.stale_after_s
            ),
            trades_kept=reader.get(
                "TICKGRAPH_TRADES_KEPT", _int_range(1, 100_000), defaults.trades_kept
            ),
            feed_live=reader.get("TICKGRAPH_FEED_LIVE", _auto_bool, None),
            live_clock_tolerance_s=reader.get(
                "TICKGRAPH_LIVE_CLOCK_TOLERANCE",
                _float_range(0.1, 3600.0),
                defaults.live_clock_tolerance_s,
            ),
            replay_clock_tolerance_s=reader.get(
                "TICKGRAPH_REPLAY_CLOCK_TOLERANCE",
                _float_range(0.1, 86_400.0),
                defaults.replay_clock_tolerance_s,
            ),
            late_tolerance_s=reader.get(
                "TICKGRAPH_LATE_TOLERANCE",
                _float_range(1.0, 7 * 86_400.0),
                defaults.late_tolerance_s,
            ),
            price_band_percent=reader.get(
                "TICKGRAPH_PRICE_BAND", _float_range(0.0, 10_000.0), defaults.price_band_percent
            ),
            second_bars_days=reader.get(
                "TICKGRAPH_SECOND_BARS_DAYS", _int_range(0, 3650), defaults.second_bars_days
            ),
            paper_starting_cash=reader.get(
                "TICKGRAPH_PAPER_STARTING_CASH",
                _decimal_range(Decimal(0), Decimal(10) ** 12),
                defaults.paper_starting_cash,
            ),
            paper_commission_per_share=reader.get(
                "TICKGRAPH_PAPER_COMMISSION_PER_SHARE",
                _decimal_range(Decimal(0), Decimal(10)),
                defaults.paper_commission_per_share,
            ),
            paper_slippage_bps=reader.get(
                "TICKGRAPH_PAPER_SLIPPAGE_BPS", _int_range(0, 1000), defaults.paper_slippage_bps
            ),
            order_price_band_percent=reader.get(
                "TICKGRAPH_ORDER_PRICE_BAND",
                _decimal_range(Decimal("0.1"), Decimal(1000)),
                defaults.order_price_band_percent,
            ),
            trading_calendar=reader.get(
                "TICKGRAPH_TRADING_CALENDAR", _calendar, defaults.trading_calendar
            ),
            drain_stall_timeout_s=reader.get(
                "TICKGRAPH_DRAIN_STALL_TIMEOUT",
                _float_range(0.1, 3600.0),
                defaults.drain_stall_timeout_s,
            ),
            feed_backoff_initial_s=reader.get(
                "TICKGRAPH_FEED_BACKOFF_INITIAL",
                _float_range(0.01, 60.0),
                defaults.feed_backoff_initial_s,
            ),
            feed_backoff_max_s=reader.get(
                "TICKGRAPH_FEED_BACKOFF_MAX",
                _float_range(0.01, 3600.0),
                defaults.feed_backoff_max_s,
            ),
            ws_init_timeout_s=reader.get(
                "TICKGRAPH_WS_INIT_TIMEOUT", _float_range(0.05, 60.0), defaults.ws_init_timeout_s
            ),
            ws_trade_queue=reader.get(
                "TICKGRAPH_WS_TRADE_QUEUE", _int_range(1, 1_000_000), defaults.ws_trade_queue
            ),
            graphiql=reader.get(
                "TICKGRAPH_GRAPHIQL", _bool, environment is Environment.DEVELOPMENT
            ),
            board=reader.get("TICKGRAPH_BOARD", _bool, defaults.board),
            metrics=reader.get(
                "TICKGRAPH_METRICS",
                _bool,
                environment is Environment.DEVELOPMENT or metrics_token is not None,
            ),
            metrics_token=metrics_token,
            allow_anonymous=reader.get(
                "TICKGRAPH_ALLOW_ANONYMOUS", _bool, environment is Environment.DEVELOPMENT
            ),
            jwt_private_keys=reader.secret("TICKGRAPH_JWT_PRIVATE_KEYS"),
            access_token_ttl_s=reader.get(
                "TICKGRAPH_ACCESS_TOKEN_TTL", _int_range(10, 86_400), defaults.access_token_ttl_s
            ),
            refresh_token_ttl_s=reader.get(
                "TICKGRAPH_REFRESH_TOKEN_TTL",
                _int_range(60, 365 * 86_400),
                defaults.refresh_token_ttl_s,
            ),
            ws_allowed_origins=reader.get("TICKGRAPH_WS_ALLOWED_ORIGINS", _origins, ()),
            ws_max_subscriptions=reader.get(
                "TICKGRAPH_WS_MAX_SUBSCRIPTIONS",
                _int_range(1, 10_000),
                defaults.ws_max_subscriptions,
            ),
            ws_max_message_bytes=reader.get(
                "TICKGRAPH_WS_MAX_MESSAGE_BYTES",
                _int_range(1024, 16 * 1024 * 1024),
                defaults.ws_max_message_bytes,
            ),
            ws_compression=reader.get("TICKGRAPH_WS_COMPRESSION", _bool, False),
            max_request_bytes=reader.get(
                "TICKGRAPH_MAX_REQUEST_BYTES",
                _int_range(1024, 64 * 1024 * 1024),
                defaults.max_request_bytes,
            ),
            trusted_proxies=reader.get("TICKGRAPH_TRUSTED_PROXIES", _networks, ()),
            access_log=reader.get("TICKGRAPH_ACCESS_LOG", _bool, defaults.access_log),
            access_log_probes=reader.get(
                "TICKGRAPH_ACCESS_LOG_PROBES", _bool, defaults.access_log_probes
            ),
            housekeeping=reader.get("TICKGRAPH_HOUSEKEEPING", _bool, defaults.housekeeping),
            token_purge_interval_s=reader.get(
                "TICKGRAPH_TOKEN_PURGE_INTERVAL",
                _float_range(1.0, 7 * 86_400.0),
                defaults.token_purge_interval_s,
            ),
            key_rotation_interval_s=reader.get(
                "TICKGRAPH_KEY_ROTATION_INTERVAL",
                _float_range(0.0, 3650 * 86_400.0),
                defaults.key_rotation_interval_s,
            ),
            bar_prune_interval_s=reader.get(
                "TICKGRAPH_BAR_PRUNE_INTERVAL",
                _float_range(1.0, 7 * 86_400.0),
                defaults.bar_prune_interval_s,
            ),
        )
        if settings.feed_backoff_max_s < settings.feed_backoff_initial_s:
            reader.problems.append(
                "TICKGRAPH_FEED_BACKOFF_MAX: must not be below TICKGRAPH_FEED_BACKOFF_INITIAL"
            )
        if 0 < settings.key_rotation_interval_s < settings.access_token_ttl_s:
            # A rotated-out key verifies for two more rotations; under one access-token
            # lifetime apart, tokens still in use would stop verifying.
            reader.problems.append(
                "TICKGRAPH_KEY_ROTATION_INTERVAL: must be 0 (never) or at least "
                "TICKGRAPH_ACCESS_TOKEN_TTL"
            )
        if (settings.alpaca_api_key_id is None) != (settings.alpaca_api_secret_key is None):
            reader.problems.append("ALPACA_API_KEY_ID/ALPACA_API_SECRET_KEY: set both or neither")
        if settings.redis_url is not None:
            # REDIS_URL makes this process one of a deployment (docs/scale-out.md).
            if settings.database_url is None:
                reader.problems.append(
                    "REDIS_URL: the processes of a deployment share one PostgreSQL; "
                    "set DATABASE_URL too"
                )
            if settings.port == 0 and not settings.advertise_url:
                reader.problems.append(
                    "TICKGRAPH_ADVERTISE_URL: with REDIS_URL and an ephemeral port (0), "
                    "say where the other processes reach this one"
                )
        if reader.problems:
            raise SettingsError(reader.problems)
        return settings

    def secret_values(self) -> list[str]:
        """Every secret this process was configured with, for the log's redaction
        (``server.logging_setup.register_secret``): keys, and the passwords in URLs."""
        values: list[str] = []
        for secret in (
            self.polygon_api_key,
            self.alpaca_api_key_id,
            self.alpaca_api_secret_key,
            self.secrets_key,
            self.anthropic_api_key,
            self.jwt_private_keys,
            self.metrics_token,
        ):
            if secret is not None:
                values.append(secret.reveal())
        for url in (self.database_url, self.redis_url):
            if url is not None:
                password = urlsplit(url.reveal()).password
                if password:
                    values.append(password)
        return values

    @property
    def streams_on_demand(self) -> bool:
        """Whether symbols outside the universe can be streamed while someone subscribes:
        the simulated market adds them and Polygon has them all, but a feed URL without
        an API key is a local replay, which has only what it recorded."""
        if self.market_source is MarketSource.SIMULATED:
            return True
        return self.polygon_api_key != Secret(LOCAL_REPLAY_KEY)

    @property
    def source_is_live(self) -> bool:
        """Whether event times can be judged against the receive time."""
        if self.feed_live is not None:
            return self.feed_live
        if self.market_source is MarketSource.SIMULATED:
            return True
        return not _is_loopback(self.polygon_endpoint.feed)

    def describe(self) -> dict[str, object]:
        """What the server runs with, safe to log: secrets appear only as set/unset."""
        return {
            "host": self.host,
            "port": self.port,
            "environment": self.environment.value,
            "data_dir": str(self.data_dir),
            "symbols": list(self.symbols),
            "database": "external" if self.database_url else "embedded",
            "bus": "redis" if self.redis_url else "in-process",
            "market": self.market_source.value,
            "polygon_url": self.polygon_endpoint.url
            if self.market_source is MarketSource.POLYGON
            else None,
            "broker": ("alpaca-live" if self.alpaca_live else "alpaca")
            if self.alpaca_api_key_id
            else "paper",
            "linked_accounts": self.secrets_key is not None,
            "analyst": self.anthropic_model if self.anthropic_api_key else "rule-based",
            "metrics": ("token" if self.metrics_token else "open") if self.metrics else "off",
        }


class _Reader:
    """Parses variables one by one and collects every problem instead of stopping at one."""

    def __init__(self, env: Mapping[str, str], labels: Mapping[str, str]) -> None:
        self.env = env
        self.labels = labels
        self.problems: list[str] = []

    def get(self, name: str, parse: Callable[[str], T], default: T, *, echo: bool = True) -> T:
        raw = self.env.get(name)
        if raw is None or raw.strip() == "":
            return default
        try:
            return parse(raw.strip())
        except ValueError as exc:
            label = self.labels.get(name, name)
            if not echo:  # the value may hold a password
                self.problems.append(f"{label}: {exc}")
            else:
                shown = raw if len(raw) <= 60 else raw[:57] + "..."
                self.problems.append(f"{label}={shown!r}: {exc}")
            return default

    def secret(self, name: str) -> Secret | None:
        raw = self.env.get(name, "").strip()
        return Secret(raw) if raw else None


def _metrics_token(raw: str) -> Secret:
    # Guessable tokens protect nothing; 16 characters of a random string is the floor.
    if len(raw) < 16:
        raise ValueError("must be at least 16 characters (e.g. `openssl rand -hex 32`)")
    if any(c.isspace() for c in raw):
        raise ValueError("must not contain whitespace")
    return Secret(raw)


def _int_range(lo: int, hi: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(f"must be a whole number between {lo} and {hi}") from None
        if not lo <= value <= hi:
            raise ValueError(f"must be between {lo} and {hi}")
        return value

    return parse


def _float_range(lo: float, hi: float) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"must be a number between {lo:g} and {hi:g}") from None
        if not lo <= value <= hi:  # also rejects NaN
            raise ValueError(f"must be between {lo:g} and {hi:g}")
        return value

    return parse


def _decimal_range(lo: Decimal, hi: Decimal) -> Callable[[str], Decimal]:
    def parse(raw: str) -> Decimal:
        try:
            value = Decimal(raw.strip())
        except ArithmeticError:
            raise ValueError(f"expected a decimal number, got {raw!r}") from None
        if not value.is_finite() or not lo <= value <= hi:
            raise ValueError(f"must be between {lo} and {hi}, got {raw!r}")
        return value

    return parse


def _calendar(raw: str) -> str | None:
    value = raw.strip().lower()
    if value == "auto":
        return None
    if value not in ("nyse", "continuous"):
        raise ValueError("expected auto, nyse or continuous")
    return value


def _bool(raw: str) -> bool:
    lowered = raw.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("must be true or false")


def _auto_bool(raw: str) -> bool | None:
    if raw.lower() == "auto":
        return None
    try:
        return _bool(raw)
    except ValueError:
        raise ValueError("must be auto, true or false") from None


def _enum(kind: type[Environment]) -> Callable[[str], Environment]:
    def parse(raw: str) -> Environment:
        try:
            return kind(raw.lower())
        except ValueError:
            raise ValueError(f"must be one of {', '.join(e.value for e in kind)}") from None

    return parse


_HOST = re.compile(r"^[A-Za-z0-9.\-:\[\]]+$")


def _host(raw: str) -> str:
    if not _HOST.match(raw):
        raise ValueError("must be a host name or IP address")
    return raw


def _path(raw: str) -> Path:
    return Path(raw).expanduser()


def _log_level(raw: str) -> str:
    level = raw.upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
    return level


def _symbols(raw: str) -> tuple[str, ...]:
    out: list[str] = []
    for part in raw.split(","):
        sym = part.strip().upper()
        if not sym:
            continue
        if not SYMBOL_PATTERN.fullmatch(sym):
            raise ValueError(f"{sym!r} is not a valid symbol (expected {SYMBOL_PATTERN.pattern})")
        if sym not in out:
            out.append(sym)
    if not out:
        raise ValueError("must list at least one symbol")
    return tuple(out)


def _url(schemes: tuple[str, ...]) -> Callable[[str], Secret]:
    def parse(raw: str) -> Secret:
        scheme = urlsplit(raw).scheme.split("+")[0]
        if scheme not in schemes:
            # Do not echo the URL: it may contain a password.
            raise ValueError(f"must be a URL with scheme {' or '.join(schemes)}")
        return Secret(raw)

    return parse


def normalize_origin(origin: str) -> str:
    """An origin as browsers send it: lower case, no default port, no trailing slash."""
    parts = urlsplit(origin.strip().rstrip("/"))
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname or parts.path:
        raise ValueError(f"{origin!r} is not an origin like https://app.example.com")
    scheme = parts.scheme.lower()
    default = 443 if scheme == "https" else 80
    port = f":{parts.port}" if parts.port and parts.port != default else ""
    return f"{scheme}://{parts.hostname.lower()}{port}"


def _event_loop(raw: str) -> str:
    choice = raw.strip().lower()
    if choice not in ("auto", "uvloop", "asyncio"):
        raise ValueError("must be auto, uvloop or asyncio")
    if choice == "uvloop":
        try:
            import uvloop  # noqa: F401
        except ImportError:
            raise ValueError("uvloop is not installed") from None
    return choice


def _networks(raw: str) -> tuple[str, ...]:
    out: list[str] = []
    for part in raw.split(","):
        entry = part.strip()
        if not entry:
            continue
        try:
            out.append(str(ipaddress.ip_network(entry, strict=False)))
        except ValueError:
            raise ValueError(
                f"{entry[:60]!r} is not an IP address or network (e.g. 10.0.0.5 or 10.0.0.0/8)"
            ) from None
    return tuple(out)


def _origins(raw: str) -> tuple[str, ...]:
    return tuple(normalize_origin(o) for o in raw.split(",") if o.strip())


_MODEL_ID = re.compile(r"^[a-z0-9][a-z0-9.\-@:]{0,99}$")


def _model_id(raw: str) -> str:
    if not _MODEL_ID.fullmatch(raw):
        raise ValueError("must be an Anthropic model id such as claude-sonnet-4-6")
    return raw


def _base_url(raw: str) -> str:
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must look like https://api.anthropic.com or http://127.0.0.1:PORT")
    return raw.rstrip("/")


def _http_url(raw: str) -> str:
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must look like https://api.polygon.io or http://127.0.0.1:PORT")
    return raw.rstrip("/")


def _is_loopback(netloc: str) -> bool:
    host = netloc.rsplit(":", 1)[0].strip("[]")
    return host in ("localhost", "::1") or host.startswith("127.")


def _polygon_endpoint(raw: str) -> PolygonEndpoint:
    parts = urlsplit(raw)
    if parts.scheme not in ("ws", "wss") or not parts.netloc:
        raise ValueError("must look like wss://host/stocks or ws://127.0.0.1:PORT/stocks")
    market = parts.path.strip("/")
    if market != "stocks":
        raise ValueError("the path must be /stocks (only the stocks feed is supported)")
    return PolygonEndpoint(feed=parts.netloc, secure=parts.scheme == "wss", market=market)


def _secrets_key(raw: str) -> Secret:
    """32 random bytes in base64 (``python -c "import os,base64;
    print(base64.b64encode(os.urandom(32)).decode())"``)."""
    try:
        key = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("must be 32 bytes in base64") from None
    if len(key) != 32:
        raise ValueError(f"must be 32 bytes in base64 (got {len(key)} bytes)")
    return Secret(raw)
