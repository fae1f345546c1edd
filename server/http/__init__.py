"""The GraphQL endpoint as strawberry runs it: HTTP (GraphQL over HTTP, with request
errors, media types and status codes done as the spec says) and the WebSocket
connection's start (authentication at ``connection_init``).

- ``view``: ``TickgraphGraphQL``, the ASGI app at ``/graphql``.
- ``responses``: how a refused or malformed request is answered: always a GraphQL
  error document with ``extensions.code``, never a bare text body or a traceback.
"""
