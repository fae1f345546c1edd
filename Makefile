# Thin aliases for ./dev, which does the real work (and needs nothing but bash + Python).
.PHONY: serve test lint schema
serve:
	./dev serve
test:
	./dev test
lint:
	./dev lint
schema:
	./dev schema > schema.graphql
