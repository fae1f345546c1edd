"""AI analysis of a symbol or a portfolio: grounded in a snapshot of live numbers,
streamed, and checked before it is shown (``docs/analysis.md``).

The pure core (snapshot, result, check, offline analyst, prompt, pricing, bracket)
imports no I/O; the Anthropic analyst, news, inputs and the service are the I/O around
it. Import from the modules themselves: this package imports nothing, so the pure core
can be used without loading the Anthropic SDK.
"""
