"""What a finished handshake gives the vendor: connected integrations, or a cancel."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pdconnect.errors import HandshakeFailed
from pdconnect.integration import Integration, Origin
from pdconnect.query import single_value

#: The ``error`` value PagerDuty sends when the user cancels.
CANCELLED = "cancelled"


@dataclass(frozen=True)
class RejectedEntry:
    """One target of an install callback that was refused while the others were kept.

    ``index`` is its position in ``config.integration_keys``; ``service_name`` its name when
    that could be read; ``reason`` what was wrong, never containing the key.
    """

    index: int
    service_name: str | None
    reason: str


@dataclass(frozen=True)
class Connected:
    """A handshake that finished: one integration per PagerDuty target the user picked.

    ``rejected`` lists the targets of an install callback that were malformed and left out
    (tell the user which); it is empty for Connect and for a callback without a bad entry.
    """

    owner_id: str
    flow: Origin
    integrations: tuple[Integration, ...]
    rejected: tuple[RejectedEntry, ...] = ()

    @property
    def integration(self) -> Integration:
        """The first (for Connect, the only) integration."""
        return self.integrations[0]


@dataclass(frozen=True)
class Cancelled:
    """The user cancelled the handshake on PagerDuty's side (``error=cancelled``)."""

    owner_id: str
    flow: Origin


Outcome = Connected | Cancelled


def check_error_parameter(params: Mapping[str, list[str]], *, owner_id: str, flow: Origin) -> Cancelled | None:
    """Turn an ``error`` parameter into a :class:`Cancelled` outcome or a :class:`HandshakeFailed`."""
    error = single_value(params, "error", required=False, max_length=255)
    if error is None:
        return None
    if error == CANCELLED:
        return Cancelled(owner_id=owner_id, flow=flow)
    raise HandshakeFailed(error)
