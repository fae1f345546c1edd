"""Settings: defaults, every variable's validation, secrets never shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.settings import Environment, MarketSource, Settings, SettingsError


def test_embedded_defaults() -> None:
    s = Settings.from_env({})
    assert (s.host, s.port, s.market_source) == ("127.0.0.1", 8000, MarketSource.SIMULATED)
    assert s.database_url is None and s.redis_url is None and s.polygon_api_key is None
    assert s.environment is Environment.DEVELOPMENT and s.graphiql and not s.log_json
    assert s.describe()["database"] == "embedded"
    assert s.board  # the board uses only the public API: on in every environment


def test_the_board_can_be_turned_off() -> None:
    assert Settings.from_env({"TICKGRAPH_ENV": "production"}).board
    assert not Settings.from_env({"TICKGRAPH_BOARD": "false"}).board
    with pytest.raises(SettingsError, match="TICKGRAPH_BOARD"):
        Settings.from_env({"TICKGRAPH_BOARD": "maybe"})


def test_values_are_parsed_and_overrides_win() -> None:
    env = {
        "TICKGRAPH_HOST": "0.0.0.0",
        "TICKGRAPH_PORT": "9000",
        "TICKGRAPH_SYMBOLS": " amzn, GOOG ,BRK.B,amzn",
        "TICKGRAPH_DATA_DIR": "/tmp/tg",
        "TICKGRAPH_ENV": "production",
    }
    s = Settings.from_env(env, {"TICKGRAPH_PORT": "9001"})
    assert (s.host, s.port) == ("0.0.0.0", 9001)
    assert s.symbols == ("AMZN", "GOOG", "BRK.B")
    assert s.data_dir == Path("/tmp/tg")
    assert s.environment is Environment.PRODUCTION and s.log_json and not s.graphiql


def test_polygon_selection() -> None:
    s = Settings.from_env({"POLYGON_API_KEY": "k"})
    assert s.market_source is MarketSource.POLYGON
    assert s.polygon_endpoint.url == "wss://socket.polygon.io/stocks"
    local = Settings.from_env({"POLYGON_WS_URL": "ws://127.0.0.1:9100/stocks"})
    assert local.market_source is MarketSource.POLYGON
    assert (local.polygon_endpoint.feed, local.polygon_endpoint.secure) == ("127.0.0.1:9100", False)
    assert local.polygon_api_key is not None and local.polygon_api_key.reveal() == "local"


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("TICKGRAPH_PORT", "abc", "whole number"),
        ("TICKGRAPH_PORT", "70000", "between 0 and 65535"),
        ("TICKGRAPH_SYMBOLS", "AAPL,1BAD", "not a valid symbol"),
        ("TICKGRAPH_SYMBOLS", " , ", "at least one symbol"),
        ("TICKGRAPH_ENV", "staging", "development, production"),
        ("TICKGRAPH_SIM_RATE", "nan", "between"),
        ("POLYGON_WS_URL", "http://x/stocks", "wss://host/stocks"),
        ("POLYGON_WS_URL", "ws://127.0.0.1:1/crypto", "/stocks"),
        ("TICKGRAPH_LOG_JSON", "maybe", "true or false"),
        ("REDIS_URL", "http://x", "scheme"),
    ],
)
def test_each_bad_value_names_the_variable(name: str, value: str, fragment: str) -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env({name: value})
    (problem,) = info.value.problems
    assert problem.startswith(name) and fragment in problem


def test_all_problems_reported_at_once() -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env({"TICKGRAPH_PORT": "x", "TICKGRAPH_HOST": "bad host!"})
    assert len(info.value.problems) == 2


def test_secrets_never_appear() -> None:
    env = {
        "DATABASE_URL": "postgresql://u:hunter2@db/x",
        "POLYGON_API_KEY": "pk-secret",
        "ANTHROPIC_API_KEY": "sk-secret",
        "ALPACA_API_KEY_ID": "id-secret",
        "ALPACA_API_SECRET_KEY": "as-secret",
    }
    s = Settings.from_env(env)
    text = repr(s) + str(s.describe())
    for secret in ("hunter2", "pk-secret", "sk-secret", "id-secret", "as-secret"):
        assert secret not in text
    with pytest.raises(SettingsError) as info:
        Settings.from_env({"DATABASE_URL": "mysql://u:hunter2@db/x"})
    assert "hunter2" not in str(info.value)


def test_alpaca_keys_come_in_pairs() -> None:
    with pytest.raises(SettingsError, match="set both or neither"):
        Settings.from_env({"ALPACA_API_KEY_ID": "x"})


def test_a_value_given_as_a_flag_is_reported_as_the_flag() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(
            {"TICKGRAPH_SYMBOLS": "1BAD"},
            {"TICKGRAPH_PORT": "abc"},
            labels={"TICKGRAPH_PORT": "--port"},
        )
    assert caught.value.problems[0] == "--port='abc': must be a whole number between 0 and 65535"
    assert caught.value.problems[1].startswith("TICKGRAPH_SYMBOLS='1BAD'")


def test_only_a_keyless_feed_url_is_a_replay_that_cannot_stream_on_demand() -> None:
    assert Settings.from_env({}).streams_on_demand  # the simulated market adds symbols
    assert Settings.from_env({"POLYGON_API_KEY": "k"}).streams_on_demand
    replay = Settings.from_env({"POLYGON_WS_URL": "ws://127.0.0.1:9100/stocks"})
    assert not replay.streams_on_demand


def test_market_data_settings() -> None:
    from server.settings import MarketSource, Settings

    s = Settings.from_env(
        {
            "TICKGRAPH_FEED_LIVE": "false",
            "TICKGRAPH_LIVE_CLOCK_TOLERANCE": "2",
            "TICKGRAPH_REPLAY_CLOCK_TOLERANCE": "120",
            "TICKGRAPH_LATE_TOLERANCE": "900",
            "TICKGRAPH_PRICE_BAND": "0",
            "TICKGRAPH_SECOND_BARS_DAYS": "0",
            "TICKGRAPH_DRAIN_STALL_TIMEOUT": "5",
        }
    )
    assert s.feed_live is False and not s.source_is_live
    assert (s.live_clock_tolerance_s, s.replay_clock_tolerance_s, s.late_tolerance_s) == (
        2.0,
        120.0,
        900.0,
    )
    assert (s.price_band_percent, s.second_bars_days, s.drain_stall_timeout_s) == (0.0, 0, 5.0)
    # auto: the simulated market and a real Polygon URL are live, a loopback replay is not.
    assert Settings.from_env({}).source_is_live
    assert Settings.from_env({"POLYGON_API_KEY": "k"}).source_is_live
    replay = Settings.from_env({"POLYGON_WS_URL": "ws://127.0.0.1:9100/stocks"})
    assert replay.market_source is MarketSource.POLYGON and not replay.source_is_live
    try:
        Settings.from_env({"TICKGRAPH_FEED_LIVE": "sometimes", "TICKGRAPH_PRICE_BAND": "-1"})
    except ValueError as exc:
        problems = exc.problems  # type: ignore[attr-defined]
        assert any("TICKGRAPH_FEED_LIVE" in p for p in problems)
        assert any("TICKGRAPH_PRICE_BAND" in p for p in problems)
    else:
        raise AssertionError("bad values were accepted")


def test_housekeeping_and_access_log_settings() -> None:
    s = Settings.from_env(
        {
            "TICKGRAPH_HOUSEKEEPING": "false",
            "TICKGRAPH_TOKEN_PURGE_INTERVAL": "60",
            "TICKGRAPH_KEY_ROTATION_INTERVAL": "0",
            "TICKGRAPH_BAR_PRUNE_INTERVAL": "120",
            "TICKGRAPH_ACCESS_LOG": "false",
            "TICKGRAPH_ACCESS_LOG_PROBES": "true",
        }
    )
    assert (s.housekeeping, s.token_purge_interval_s, s.key_rotation_interval_s) == (
        False,
        60.0,
        0.0,
    )
    assert (s.bar_prune_interval_s, s.access_log, s.access_log_probes) == (120.0, False, True)
    defaults = Settings.from_env({})
    assert (defaults.housekeeping, defaults.access_log, defaults.access_log_probes) == (
        True,
        True,
        False,
    )
    # A rotated-out key must outlive the tokens it signed.
    with pytest.raises(SettingsError) as error:
        Settings.from_env(
            {"TICKGRAPH_KEY_ROTATION_INTERVAL": "600", "TICKGRAPH_ACCESS_TOKEN_TTL": "900"}
        )
    assert error.value.problems == [
        "TICKGRAPH_KEY_ROTATION_INTERVAL: must be 0 (never) or at least TICKGRAPH_ACCESS_TOKEN_TTL"
    ]
