"""The graphql-transport-ws connection: protocol handling, guards, frame writing.

- ``handler``: the protocol handler strawberry runs, with multiplexed subscriptions
  (each operation joins its group instead of executing per connection).
- ``guard``: origins, message size, operations per socket; the HTTP body limit.
- ``frames``: uvicorn's sans-I/O WebSocket protocol with a direct frame writer, so an
  outbox flush is one ``transport.write``.
"""
