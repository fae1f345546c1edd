"""Pages tickgraph serves to browsers (the trading board, GraphiQL), and the front-end
files they load from pinned npm packages (``server.web.assets``)."""
