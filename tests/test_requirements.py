"""``requirements.txt`` is enough to run the suite: every third-party module the services import
at start comes from a distribution it pins, or from one of their declared dependencies.

The tests run in a venv with the dev tools too, so a runtime import that only a dev tool brings
(gunicorn's gevent worker imports ``packaging`` without declaring it) would pass every other test
and still crash ``bash scripts/run.sh`` on a fresh clone.
"""

from __future__ import annotations

import importlib.metadata as metadata
import subprocess
import sys

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from common.config import REPO_ROOT

ENTRY_MODULES = (
    "main",
    "user_service.main",
    "mobile_service.main",
    "llm_service.main",
    "image_service.main",
    "web_service.main",
    "web_service.app.server",
)
OWN_PACKAGES = {"common", "user_service", "mobile_service", "llm_service", "image_service", "web_service", "devtools"}
# Imported only when present: httpx's optional command line (rich, pygments) finds them in the dev
# venv; setuptools' ``_distutils_hack`` comes in with the interpreter's site start-up.
OPTIONAL_WHEN_PRESENT = {"rich", "pygments", "_distutils_hack"}


def pinned_closure() -> set[str]:
    """The distributions requirements.txt pins, with everything they declare, extras included."""
    wanted: list[tuple[str, frozenset[str]]] = []
    for line in (REPO_ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            requirement = Requirement(line)
            wanted.append((requirement.name, frozenset(requirement.extras)))
    seen: set[str] = set()
    while wanted:
        name, extras = wanted.pop()
        key = canonicalize_name(name)
        if key in seen and not extras:
            continue
        seen.add(key)
        for spec in metadata.requires(name) or []:
            requirement = Requirement(spec)
            environments = [{"extra": extra} for extra in extras] or [{"extra": ""}]
            if requirement.marker is None or any(requirement.marker.evaluate(env) for env in environments):
                wanted.append((requirement.name, frozenset(requirement.extras)))
    return seen


def imported_at_start() -> set[str]:
    probe = f"import sys; import {', '.join(ENTRY_MODULES)}; print(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, check=True, timeout=120
    )
    return set(result.stdout.split())


def test_every_module_the_services_import_comes_from_requirements_txt() -> None:
    closure = pinned_closure()
    owners = metadata.packages_distributions()
    uncovered = {}
    for module in imported_at_start() - OWN_PACKAGES - OPTIONAL_WHEN_PRESENT - set(sys.stdlib_module_names):
        distributions = {canonicalize_name(d) for d in owners.get(module, [])}
        if distributions and not distributions & closure:
            uncovered[module] = sorted(distributions)
    assert uncovered == {}, f"imported at start but not pinned in requirements.txt (nor required by a pin): {uncovered}"
