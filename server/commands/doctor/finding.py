"""One line of ``tickgraph doctor``: a status, the area it is about, what was found."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Status(StrEnum):
    OK = "ok"
    WARN = "warn"  # works, but not as it should in this setting
    FAIL = "fail"  # will not work, or is unsafe


@dataclass(frozen=True, slots=True)
class Finding:
    status: Status
    area: str
    message: str

    def line(self) -> str:
        # One line, always: a driver message may carry line breaks.
        text = " ".join(self.message.split())
        return f"{self.status.value:<4}  {self.area:<13} {text}"


def ok(area: str, message: str) -> Finding:
    return Finding(Status.OK, area, message)


def warn(area: str, message: str) -> Finding:
    return Finding(Status.WARN, area, message)


def fail(area: str, message: str) -> Finding:
    return Finding(Status.FAIL, area, message)


def describe_error(exc: BaseException) -> str:
    """An exception in a few words (its type when it has no message)."""
    text = str(exc).strip()
    if isinstance(exc, TimeoutError) or not text:
        return type(exc).__name__ if not isinstance(exc, TimeoutError) else "no answer in time"
    return f"{type(exc).__name__}: {text}" if type(exc).__name__ not in text else text
