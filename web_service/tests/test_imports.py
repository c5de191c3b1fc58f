"""web_service is a WSGI process: importing it loads none of the ASGI proxy's stack."""

from __future__ import annotations

import subprocess
import sys

from common.config import REPO_ROOT

ASGI_STACK = ("aiohttp", "starlette", "fastapi", "yarl", "multidict")


def test_importing_web_service_loads_no_aiohttp_or_starlette() -> None:
    probe = "import sys, web_service.main; print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    loaded = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    assert "flask" in loaded  # the probe imported the app
    assert [name for name in ASGI_STACK if name in loaded] == []
