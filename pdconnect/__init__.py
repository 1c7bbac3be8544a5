"""pdconnect: the vendor side of PagerDuty.

Offer your users an "Alert with PagerDuty" button, complete the handshake safely, and send
your product's alerts to the services they connected. The names here are the ones a vendor
uses day to day; everything else lives in its own module (errors in :mod:`pdconnect.errors`;
per-account OAuth in :mod:`pdconnect.oauth`, kept out of here so that ``import pdconnect`` loads
no JOSE or crypto library).
"""

from pdconnect.button import ButtonSize, ButtonTheme, button_css, button_html, embed_snippet
from pdconnect.connect import build_connect_url, parse_connect_callback
from pdconnect.errors import DeliveryError, EventValidationError, HandshakeError, PdConnectError
from pdconnect.events import AlertEvent, ChangeEvent, EventAction, Image, LegacyEvent, Link, Severity
from pdconnect.handshake import Handshake
from pdconnect.install import build_install_url, parse_install_callback
from pdconnect.integration import EventsApi, Integration, Origin, Region, integration_from_key
from pdconnect.keys import KeyType
from pdconnect.nonces import MemoryNonceStore, NonceStore, SqlNonceStore
from pdconnect.outcomes import Cancelled, Connected
from pdconnect.retry import RetryPolicy
from pdconnect.sender import PreparedEvent, Sender, SendResult
from pdconnect.state import new_session_binding
from pdconnect.storage import IntegrationStore, MemoryIntegrationStore, SqlIntegrationStore, StoredIntegration
from pdconnect.version import __version__

__all__ = [
    "AlertEvent",
    "ButtonSize",
    "ButtonTheme",
    "Cancelled",
    "ChangeEvent",
    "Connected",
    "DeliveryError",
    "EventAction",
    "EventValidationError",
    "EventsApi",
    "Handshake",
    "HandshakeError",
    "Image",
    "Integration",
    "IntegrationStore",
    "KeyType",
    "LegacyEvent",
    "Link",
    "MemoryIntegrationStore",
    "MemoryNonceStore",
    "NonceStore",
    "Origin",
    "PdConnectError",
    "PreparedEvent",
    "Region",
    "RetryPolicy",
    "SendResult",
    "Sender",
    "Severity",
    "SqlIntegrationStore",
    "SqlNonceStore",
    "StoredIntegration",
    "__version__",
    "build_connect_url",
    "build_install_url",
    "button_css",
    "button_html",
    "embed_snippet",
    "integration_from_key",
    "new_session_binding",
    "parse_connect_callback",
    "parse_install_callback",
]
