"""The HTTP layer under the sender: one POST, one answer, no policy.

:class:`RequestsTransport` is the default: a ``requests.Session`` (passed in, so vendors'
proxies, adapters and ``responses`` in their tests all apply), keep-alive, explicit connect
and read timeouts, redirects never followed. Any object with the same ``post`` method can
take its place.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

import requests
from requests.adapters import HTTPAdapter


@dataclass(frozen=True)
class HttpResponse:
    """The parts of an HTTP answer the sender reads. Header names are lowercase."""

    status: int
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)


class TransportError(Exception):
    """No HTTP answer: connection refused or reset, timeout, DNS or TLS failure.

    ``reason`` is a short description without the request body. ``retryable`` is false for
    failures another attempt cannot mend, such as a malformed URL.
    """

    def __init__(self, reason: str, *, retryable: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable


class Transport(Protocol):
    """Sends one POST and returns the answer, or raises :class:`TransportError`."""

    def post(self, url: str, body: bytes, headers: Mapping[str, str], timeout: tuple[float, float]) -> HttpResponse: ...

    def close(self) -> None: ...


class RequestsTransport:
    """A :class:`Transport` over a ``requests.Session``.

    When no session is given, one is made with a connection pool of ``pool_size``
    connections per host, enough for that many threads sharing the sender. A session that
    is passed in is used as it is and not closed by :meth:`close`.
    """

    def __init__(self, session: requests.Session | None = None, *, pool_size: int = 16) -> None:
        self._owns_session = session is None
        if session is None:
            session = requests.Session()
            adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0)
            session.mount("https://", adapter)
            session.mount("http://", adapter)
        self.session = session

    def post(self, url: str, body: bytes, headers: Mapping[str, str], timeout: tuple[float, float]) -> HttpResponse:
        try:
            response = self.session.post(
                url,
                data=body,
                headers=dict(headers),
                timeout=timeout,
                allow_redirects=False,
                # requests lets REQUESTS_CA_BUNDLE override the session's own setting unless it is passed.
                verify=self.session.verify,
            )
        except requests.Timeout as exc:
            raise TransportError(f"timed out ({type(exc).__name__})") from exc
        except requests.ConnectionError as exc:
            raise TransportError(f"connection failed ({type(exc).__name__})") from exc
        except (
            requests.exceptions.InvalidURL,
            requests.exceptions.MissingSchema,
            requests.exceptions.InvalidSchema,
        ) as exc:
            raise TransportError(f"bad URL ({type(exc).__name__})", retryable=False) from exc
        except requests.RequestException as exc:
            raise TransportError(f"request failed ({type(exc).__name__})") from exc
        return HttpResponse(
            status=response.status_code,
            body=response.content,
            headers={k.lower(): v for k, v in response.headers.items()},
        )

    def close(self) -> None:
        if self._owns_session:
            self.session.close()
