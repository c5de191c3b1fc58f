"""Shared package of the Smart Record Assistant services.

One module per concern: ``config`` (settings), ``database`` (async SQLAlchemy), ``models``
(shared tables), ``cache`` (Redis), ``security`` (passwords, JWTs, auth dependencies),
``api_clients`` (inter-service HTTP), ``app_factory`` / ``flask_factory`` (the app builders),
``errors`` (docs/api.md §4 error shape) and ``logging_setup``.
"""

__version__ = "0.1.0"
