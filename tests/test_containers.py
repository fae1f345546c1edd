"""The container files, checked without a Docker engine: the image runs the server as an
unprivileged user on the port the settings use, its health check calls a real route,
the compose stack puts two replicas behind a WebSocket-capable balancer with Redis 7,
PostgreSQL and Prometheus (with the metrics token), and every variable it sets is one
the server reads."""

from __future__ import annotations

import ast
import re
import shlex
from pathlib import Path
from typing import Any

import yaml
from starlette.routing import Route

from server.app import create_app
from server.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
REPLICAS = ("tickgraph-1", "tickgraph-2")


def dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) per instruction, continuation lines joined."""
    text = (ROOT / "Dockerfile").read_text()
    logical = re.sub(r"\\\n", " ", text)
    out = []
    for line in logical.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            word, _, rest = stripped.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def final_stage() -> list[tuple[str, str]]:
    steps = dockerfile()
    last = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    return steps[last:]


def exec_form(args: str) -> list[str]:
    parsed = yaml.safe_load(args)  # a JSON array is YAML
    assert isinstance(parsed, list), f"use the exec form (a JSON array): {args}"
    return [str(a) for a in parsed]


def image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for word, args in final_stage():
        if word == "ENV":
            for part in shlex.split(args):
                key, _, value = part.partition("=")
                env[key] = value
    return env


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def known_variables() -> set[str]:
    """Every environment variable ``Settings.from_env`` reads: the first argument of each
    ``reader.get``/``reader.secret``/``env.get`` call in server/settings.py."""
    tree = ast.parse((ROOT / "server" / "settings.py").read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("get", "secret")
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id in ("reader", "env")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            names.add(node.args[0].value)
    return names


def test_the_variables_are_read_from_settings() -> None:
    known = known_variables()
    assert {"TICKGRAPH_PORT", "DATABASE_URL", "REDIS_URL", "TICKGRAPH_METRICS_TOKEN"} <= known
    assert "POSTGRES_PASSWORD" not in known and "HOME" not in known


def test_image_is_multi_stage_slim_and_unprivileged() -> None:
    steps = dockerfile()
    stages = [args for word, args in steps if word == "FROM"]
    assert len(stages) >= 3 and stages[0].startswith("node:") and "AS web" in stages[0]
    assert final_stage()[0][1].startswith("python:") and "slim" in final_stage()[0][1]
    runs = " ".join(args for word, args in steps if word == "RUN")
    assert "npm ci" in runs and "python -m server.web.assets install" in runs
    users = [args for word, args in final_stage() if word == "USER"]
    assert users and users[-1] not in ("root", "0"), users


def test_image_runs_the_server_on_the_settings_port() -> None:
    stage = dict(final_stage())
    command = exec_form(stage["ENTRYPOINT"]) + exec_form(stage["CMD"])
    assert command == ["tickgraph", "serve"]
    env = image_env()
    assert set(env) <= known_variables() | {"PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED"}
    settings = Settings.from_env(env)
    assert settings.host == "0.0.0.0"
    exposed = [
        int(p.split("/")[0])
        for word, args in final_stage()
        if word == "EXPOSE"
        for p in args.split()
    ]
    assert exposed == [settings.port] == [Settings().port]


def test_health_check_calls_a_real_route() -> None:
    health = dict(final_stage())["HEALTHCHECK"]
    command = exec_form(health.split(" CMD ", 1)[1])
    script = " ".join(command)
    path = re.search(r"https?://127\.0\.0\.1:\{port\}(/[a-z]+)", script)
    assert path is not None, script
    assert "TICKGRAPH_PORT" in script  # follows the port the server listens on
    app = create_app(Settings(graphiql=False))
    routes = {r.path for r in app.routes if isinstance(r, Route)}
    assert path.group(1) in routes and path.group(1) == "/healthz"


def test_compose_runs_two_replicas_with_redis_7_postgres_and_prometheus() -> None:
    services = compose()["services"]
    for name in REPLICAS:
        assert services[name]["build"] == "."
    assert services["redis"]["image"].split(":")[1].split(".")[0] == "7"
    assert services["postgres"]["image"].startswith("postgres:")
    env = services[REPLICAS[0]]["environment"]
    assert (
        env["DATABASE_URL"].startswith("postgresql://") and "@postgres:5432/" in env["DATABASE_URL"]
    )
    assert env["REDIS_URL"].startswith("redis://redis:6379")
    # One deployment: the same settings, each advertising its own address (the one the
    # other relays to), on the port it listens on.
    envs = [dict(services[name]["environment"]) for name in REPLICAS]
    for name, replica in zip(REPLICAS, envs, strict=True):
        assert replica.pop("TICKGRAPH_ADVERTISE_URL") == f"http://{name}:{env['TICKGRAPH_PORT']}"
        assert services[name]["restart"] == "unless-stopped"  # a deposed leader exits 75
    assert envs[0] == envs[1]


def test_every_variable_set_in_compose_is_a_setting() -> None:
    known = known_variables()
    for name in REPLICAS:
        env = compose()["services"][name]["environment"]
        unknown = set(env) - known
        assert not unknown, f"{name} sets variables the server never reads: {unknown}"
        # The values written out, and the defaults of those interpolated from the host,
        # are valid settings (what must come from the host, ${NAME:?...}, is left out).
        written = {k: _with_defaults(str(v)) for k, v in env.items()}
        Settings.from_env({k: v for k, v in written.items() if "${" not in v})


def _with_defaults(value: str) -> str:
    """``value`` with each ``${NAME:-default}`` replaced by its default, as compose does
    when the host leaves NAME unset."""
    return re.sub(r"\$\{[A-Z0-9_]+:-([^}]*)\}", lambda m: m.group(1), value)


def test_replicas_share_keys_and_trust_only_the_balancer_network() -> None:
    doc = compose()
    env = doc["services"][REPLICAS[0]]["environment"]
    assert "TICKGRAPH_JWT_PRIVATE_KEYS" in env and "TICKGRAPH_METRICS_TOKEN" in env
    subnet = doc["networks"]["backend"]["ipam"]["config"][0]["subnet"]
    assert env["TICKGRAPH_TRUSTED_PROXIES"] == subnet
    assert Settings.from_env({"TICKGRAPH_TRUSTED_PROXIES": subnet}).trusted_proxies == (subnet,)


def nginx() -> str:
    return (ROOT / "deploy" / "nginx.conf").read_text()


def test_balancer_proxies_both_replicas_and_websocket_upgrades() -> None:
    services = compose()["services"]
    lb = services["lb"]
    assert "./deploy/nginx.conf:/etc/nginx/nginx.conf:ro" in lb["volumes"]
    conf = nginx()
    upstream = re.search(r"upstream tickgraph \{(.*?)\}", conf, re.S)
    assert upstream is not None
    port = Settings().port
    assert re.findall(r"server ([\w-]+):(\d+)", upstream.group(1)) == [
        (name, str(port)) for name in REPLICAS
    ]
    assert "proxy_pass http://tickgraph;" in conf
    assert "proxy_http_version 1.1;" in conf
    assert "proxy_set_header Upgrade $http_upgrade;" in conf
    assert "proxy_set_header Connection $connection_upgrade;" in conf
    assert re.search(r"map \$http_upgrade \$connection_upgrade \{[^}]*default upgrade;", conf)
    timeout = re.search(r"proxy_read_timeout (\d+)s;", conf)
    assert timeout is not None and int(timeout.group(1)) >= 600
    assert "proxy_set_header X-Request-ID $request_id;" in conf
    listen = re.search(r"listen (\d+);", conf)
    assert listen is not None and f"{listen.group(1)}:{listen.group(1)}" in lb["ports"]


def test_prometheus_scrapes_each_replica_with_the_token() -> None:
    doc = compose()
    prometheus = doc["services"]["prometheus"]
    assert "metrics_token" in prometheus["secrets"]
    assert doc["secrets"]["metrics_token"] == {"environment": "TICKGRAPH_METRICS_TOKEN"}
    config = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    mounted = {v.split(":")[0]: v.split(":")[1] for v in prometheus["volumes"]}
    assert mounted["./deploy/prometheus.yml"] == "/etc/prometheus/prometheus.yml"
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    assert job["authorization"] == {
        "type": "Bearer",
        "credentials_file": "/run/secrets/metrics_token",
    }
    targets = job["static_configs"][0]["targets"]
    assert targets == [f"{name}:{Settings().port}" for name in REPLICAS]
