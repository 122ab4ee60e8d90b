"""The local web app: explore a workspace's runs (map, clusters, images), search, and file new images.

``create_app(workspace)`` builds the FastAPI app (routers per resource under ``/api/``, the static
front-end at ``/``); ``serve`` runs it with uvicorn. Needs the ``web`` extra (fastapi, uvicorn).
"""

from .app import create_app, serve

__all__ = ["create_app", "serve"]
