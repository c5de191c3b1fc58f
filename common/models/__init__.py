"""Shared tables. Every module of this package is imported here so that ``Base.metadata``
knows every table (create_all, Alembic). One module per domain: ``user``, ``record``, ...
"""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

from common.models.user import User  # noqa: E402

__all__ = ["User"]
