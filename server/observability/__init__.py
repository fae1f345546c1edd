"""Seeing what the server does: Prometheus metrics read at scrape time
(``metrics``, ``endpoint``) and the correlation id carried into every log line
(``correlation``)."""
