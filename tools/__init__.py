"""Helpers for ./dev (standard library only: they run before anything is installed)."""
