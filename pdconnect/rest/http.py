"""One REST request of any method through the package's transport, with its deadline and size cap.

:class:`~pdconnect.transport.Transport` only POSTs (events need nothing else). REST calls also
GET, PUT and DELETE, so :func:`send` uses a transport's ``request(method, url, body, headers,
timeout)`` when it has one (a test double, a vendor's own), and a
:class:`~pdconnect.transport.RequestsTransport` through its session with the same guarantees
as its ``post``: the whole answer within ``connect + read`` seconds, at most
:data:`~pdconnect.transport.MAX_RESPONSE_BYTES` read, redirects never followed (a redirect
would carry the bearer token to wherever it points).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Protocol, runtime_checkable

import requests

from pdconnect import transport as _transport
from pdconnect.transport import HttpResponse, RequestsTransport, TransportError


@runtime_checkable
class RestTransport(Protocol):
    """A transport that sends any method: ``request(method, url, body, headers, timeout)``."""

    def request(
        self, method: str, url: str, body: bytes, headers: Mapping[str, str], timeout: tuple[float, float]
    ) -> HttpResponse: ...


def check_rest_transport(transport: object) -> None:
    """Refuse, when the client is made, a transport that cannot send GET, PUT and DELETE."""
    if not isinstance(transport, RestTransport | RequestsTransport):
        raise ValueError("the REST client's transport needs a request() method (or use a RequestsTransport)")


def send(
    transport: object, method: str, url: str, body: bytes, headers: Mapping[str, str], timeout: tuple[float, float]
) -> HttpResponse:
    """One attempt; raises :class:`~pdconnect.transport.TransportError` without an answer."""
    if isinstance(transport, RestTransport):
        return transport.request(method, url, body, headers, timeout)
    assert isinstance(transport, RequestsTransport)
    # RequestsTransport.post's machinery for any method. To fold into transport.py as a
    # request() method (pdconnect.oauth.http does the same for GET); until then, here.
    deadline = _transport._Deadline.start(timeout, time.monotonic)
    _transport._current.deadline = deadline
    try:
        response = transport.session.request(
            method,
            url,
            data=body if body else None,
            headers=dict(headers),
            timeout=timeout,
            allow_redirects=False,
            verify=transport.session.verify,
            stream=True,
        )
        with response:
            data = _transport._read_capped(response, deadline)
    except _transport._DeadlinePassed as exc:
        raise _transport._too_slow(timeout) from exc
    except (requests.Timeout, requests.ConnectionError) as exc:
        if _transport._deadline_passed(exc):
            raise _transport._too_slow(timeout) from exc
        raise TransportError(f"connection failed ({type(exc).__name__})") from exc
    except (
        requests.exceptions.InvalidURL,
        requests.exceptions.MissingSchema,
        requests.exceptions.InvalidSchema,
    ) as exc:
        raise TransportError(f"bad URL ({type(exc).__name__})", retryable=False) from exc
    except requests.RequestException as exc:
        raise TransportError(f"request failed ({type(exc).__name__})") from exc
    finally:
        _transport._current.deadline = None
    return HttpResponse(
        status=response.status_code, body=data, headers={k.lower(): v for k, v in response.headers.items()}
    )
