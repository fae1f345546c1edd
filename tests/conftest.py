"""Test-wide fixtures. Fixture modules live in tests/support and are registered here."""

pytest_plugins = ["tests.support.postgres", "tests.support.redis"]
