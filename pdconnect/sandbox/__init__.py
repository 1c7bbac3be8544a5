"""A local PagerDuty for demos and tests: the parts a vendor integration touches.

Same paths, parameters, status codes and bodies as PagerDuty (Connect and install-flow
pages, the Events APIs, webhook subscriptions and signed V3 webhooks), so changing a base
URL is all a client needs. Start one with ``pdconnect sandbox``, or in Python::

    from pdconnect.sandbox import SandboxServer

    with SandboxServer() as server:
        print(server.url)            # e.g. http://127.0.0.1:54321

In pytest, the ``pagerduty_sandbox`` fixture (installed with pdconnect) gives each test a
fresh one. Names are imported lazily, so loading the pytest plugin costs nothing until a
test asks for the fixture.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pdconnect.sandbox.client import SandboxClient as SandboxClient
    from pdconnect.sandbox.client import SandboxClientError as SandboxClientError
    from pdconnect.sandbox.engine import Sandbox as Sandbox
    from pdconnect.sandbox.engine import SandboxError as SandboxError
    from pdconnect.sandbox.engine import SandboxSettings as SandboxSettings
    from pdconnect.sandbox.faults import FaultPlan as FaultPlan
    from pdconnect.sandbox.server import SandboxServer as SandboxServer
    from pdconnect.sandbox.tls import TlsFiles as TlsFiles
    from pdconnect.sandbox.tls import make_certificates as make_certificates
    from pdconnect.sandbox.webhooks import RetrySchedule as RetrySchedule

_HOMES = {
    "FaultPlan": "faults",
    "RetrySchedule": "webhooks",
    "Sandbox": "engine",
    "SandboxClient": "client",
    "SandboxClientError": "client",
    "SandboxError": "engine",
    "SandboxServer": "server",
    "SandboxSettings": "engine",
    "TlsFiles": "tls",
    "make_certificates": "tls",
}

__all__ = [
    "FaultPlan",
    "RetrySchedule",
    "Sandbox",
    "SandboxClient",
    "SandboxClientError",
    "SandboxError",
    "SandboxServer",
    "SandboxSettings",
    "TlsFiles",
    "make_certificates",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'pdconnect.sandbox' has no attribute {name!r}")
    return getattr(importlib.import_module(f"pdconnect.sandbox.{home}"), name)
