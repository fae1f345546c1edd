"""Pages tickgraph serves to browsers (GraphiQL), and the front-end files they load
from pinned npm packages (``server.web.assets``)."""
