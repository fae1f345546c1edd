"""What tokens cost, for the usage estimate shown with every analysis.

Anthropic's list prices in US dollars per million tokens (standard tier, prompts under
200K tokens), by model family; a model id matches the longest prefix. Prompt caching:
writing the 5-minute cache costs 1.25x the input price, reading it 0.1x. The Messages
API reports ``input_tokens`` *after* the last cache breakpoint, so the three input
counts are disjoint and each is priced once.

An unknown model gives ``None`` (shown as "unknown"), never a guessed price.
"""

from __future__ import annotations

from decimal import Decimal

from server.analysis.result import Usage

_MILLION = Decimal(1_000_000)
CACHE_WRITE_FACTOR = Decimal("1.25")
CACHE_READ_FACTOR = Decimal("0.1")

#: (input, output) dollars per million tokens.
PRICES: dict[str, tuple[Decimal, Decimal]] = {
    "claude-opus-4-1": (Decimal(15), Decimal(75)),
    "claude-opus-4-2": (Decimal(15), Decimal(75)),  # Opus 4: claude-opus-4-2025MMDD
    "claude-opus-4": (Decimal(5), Decimal(25)),  # Opus 4.5 and later
    "claude-sonnet-4": (Decimal(3), Decimal(15)),
    "claude-3-7-sonnet": (Decimal(3), Decimal(15)),
    "claude-haiku-4": (Decimal(1), Decimal(5)),
    "claude-3-5-haiku": (Decimal("0.8"), Decimal(4)),
    "claude-3-haiku": (Decimal("0.25"), Decimal("1.25")),
}


def prices_for(model: str) -> tuple[Decimal, Decimal] | None:
    best = max((p for p in PRICES if model.startswith(p)), key=len, default=None)
    return PRICES[best] if best is not None else None


def cost_usd(
    model: str,
    *,
    input_tokens: int,
    output_tokens: int,
    cache_read_tokens: int,
    cache_write_tokens: int,
) -> Decimal | None:
    """The estimated cost, to a millionth of a dollar, or ``None`` for an unknown model."""
    prices = prices_for(model)
    if prices is None:
        return None
    inp, out = prices
    total = (
        input_tokens * inp
        + cache_write_tokens * inp * CACHE_WRITE_FACTOR
        + cache_read_tokens * inp * CACHE_READ_FACTOR
        + output_tokens * out
    ) / _MILLION
    return total.quantize(Decimal("0.000001"))


def usage_of(
    model: str,
    *,
    input_tokens: int,
    output_tokens: int,
    cache_read_tokens: int,
    cache_write_tokens: int,
) -> Usage:
    return Usage(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_read_tokens=cache_read_tokens,
        cache_write_tokens=cache_write_tokens,
        cost_usd=cost_usd(
            model,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cache_read_tokens=cache_read_tokens,
            cache_write_tokens=cache_write_tokens,
        ),
    )
