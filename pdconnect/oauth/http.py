"""One request to PagerDuty's identity host, retried within the package's retry policy.

The token endpoint is a POST through the vendor's :class:`~pdconnect.transport.Transport`, as
every event is. The JWKS document is a GET, which the :class:`~pdconnect.transport.Transport`
protocol does not have (yet): a transport with a ``get(url, headers, timeout)`` method is used
as it is, a :class:`~pdconnect.transport.RequestsTransport` through its session (its size cap,
its deadline and no redirects kept), anything else is refused when the client is made.

429, 408 and 5xx answers and network failures are retried with the policy's backoff (a 429
waits at least its ``rate_limit_delay``, a ``Retry-After`` only lengthens a wait) until its
attempts or deadline run out; every other answer is returned to the caller to read.

A request that must not arrive twice (``replayable=False``: a code exchange or a refresh, whose
code or refresh token PagerDuty spends on first sight) is retried only when it certainly did
not arrive (no connection was made) or the answer says it was not processed (429, 503). After a
read timeout, a connection dropped once the request was sent, or another 5xx, it raises a
retryable :class:`TokenEndpointError` at once: a second try would send a spent token, be
refused with ``invalid_grant``, and lose the connection for good.
"""

from __future__ import annotations

import logging
import random
import socket
import time
from collections.abc import Callable, Mapping
from typing import Protocol, runtime_checkable

import requests
import urllib3.exceptions

from pdconnect import transport as _transport
from pdconnect.integration import EventsApi
from pdconnect.oauth.errors import TokenEndpointError
from pdconnect.retry import RetryPolicy, Verdict, classify_status, parse_retry_after
from pdconnect.transport import HttpResponse, RequestsTransport, Transport, TransportError

logger = logging.getLogger("pdconnect.oauth")

#: An interactive callback should not hang for minutes: three tries within twenty seconds.
DEFAULT_RETRY = RetryPolicy(max_attempts=3, base_delay=0.5, max_delay=4.0, deadline=20.0, rate_limit_delay=5.0)
DEFAULT_TIMEOUT = (5.0, 10.0)


@runtime_checkable
class GetTransport(Protocol):
    """A transport that can also GET: ``get(url, headers, timeout)`` returns an :class:`HttpResponse`."""

    def get(self, url: str, headers: Mapping[str, str], timeout: tuple[float, float]) -> HttpResponse: ...


def check_transport(transport: object) -> None:
    """Refuse, when the client is made, a transport that cannot fetch PagerDuty's keys."""
    if not isinstance(transport, GetTransport | RequestsTransport):
        raise ValueError("the OAuth client's transport needs a get() method (or use a RequestsTransport)")


def _get(transport: Transport, url: str, headers: Mapping[str, str], timeout: tuple[float, float]) -> HttpResponse:
    if isinstance(transport, GetTransport):
        return transport.get(url, headers, timeout)
    assert isinstance(transport, RequestsTransport)
    # RequestsTransport.post's machinery, for a GET: the whole answer within connect + read
    # seconds, at most MAX_RESPONSE_BYTES read, no redirects. To fold into transport.py as a
    # get() method; until then these private names are used here, and only here.
    deadline = _transport._Deadline.start(timeout, time.monotonic)
    _transport._current.deadline = deadline
    try:
        response = transport.session.get(
            url, headers=dict(headers), timeout=timeout, allow_redirects=False, stream=True
        )
        with response:
            body = _transport._read_capped(response, deadline)
    except _transport._DeadlinePassed as exc:
        raise _transport._too_slow(timeout) from exc
    except (requests.Timeout, requests.ConnectionError) as exc:
        if _transport._deadline_passed(exc):
            raise _transport._too_slow(timeout) from exc
        raise TransportError(f"connection failed ({type(exc).__name__})") from exc
    except requests.RequestException as exc:
        raise TransportError(f"request failed ({type(exc).__name__})") from exc
    finally:
        _transport._current.deadline = None
    return HttpResponse(
        status=response.status_code, body=body, headers={k.lower(): v for k, v in response.headers.items()}
    )


#: Failures that happen before a byte of the request is sent: refused, unresolvable, no connection in time.
_NOT_SENT: tuple[type[BaseException], ...] = (
    ConnectionRefusedError,
    socket.gaierror,
    urllib3.exceptions.NewConnectionError,
    urllib3.exceptions.ConnectTimeoutError,
    requests.exceptions.ConnectTimeout,
)
#: Answers that say the request was not processed (RFC 9110 15.6.4, RFC 6585 4).
_NOT_PROCESSED = frozenset({429, 503})


def _certainly_not_sent(exc: BaseException) -> bool:
    """Whether ``exc`` (a :class:`TransportError`) was caused by a failure to connect, however wrapped."""
    pending: list[BaseException] = [exc]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, _NOT_SENT):
            return True
        reason = getattr(current, "reason", None)
        linked = [current.__cause__, current.__context__, reason, *(current.args[:1] if current.args else ())]
        pending.extend(item for item in linked if isinstance(item, BaseException))
    return False


class Requester:
    """Makes one logical request, retrying temporary failures; never logs a body."""

    def __init__(
        self,
        transport: Transport,
        *,
        retry: RetryPolicy,
        timeout: tuple[float, float],
        sleep: Callable[[float], None],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.transport = transport
        self.retry = retry
        self.timeout = timeout
        self._sleep = sleep
        self._monotonic = monotonic
        self._rng = random.Random()  # noqa: S311 -- jitter, not a secret

    def request(
        self,
        method: str,
        url: str,
        *,
        what: str,
        body: bytes = b"",
        headers: Mapping[str, str],
        replayable: bool = True,
    ) -> HttpResponse:
        """Send until an answer that is not temporary arrives; raise :class:`TokenEndpointError` otherwise.

        ``what`` names the request in messages and logs ("the token endpoint"). With
        ``replayable=False`` a failure after which the request may have arrived is not retried
        (see the module docstring): it raises a retryable :class:`TokenEndpointError`.
        """
        policy = self.retry
        started = self._monotonic()
        status: int | None = None
        reason = "no attempt"
        for attempt in range(1, policy.max_attempts + 1):
            retry_after: float | None = None
            try:
                if method == "POST":
                    response = self.transport.post(url, body, headers, self.timeout)
                else:
                    response = _get(self.transport, url, headers, self.timeout)
            except TransportError as exc:
                status, reason = None, exc.reason
                if not exc.retryable:
                    raise TokenEndpointError(f"cannot reach {what}: {reason}", retryable=False) from exc
                if not replayable and not _certainly_not_sent(exc):
                    logger.error("%s: %s; not retried, the request may have arrived", what, reason)
                    raise TokenEndpointError(
                        f"{what} gave no answer ({reason}); try again later", retryable=True
                    ) from exc
            else:
                if classify_status(response.status, EventsApi.V2) is not Verdict.RETRY:
                    return response
                status, reason = response.status, f"HTTP {response.status}"
                if not replayable and status not in _NOT_PROCESSED:
                    logger.error("%s: %s; not retried, the request may have been processed", what, reason)
                    raise TokenEndpointError(
                        f"{what} answered {reason}; try again later", status=status, retryable=True
                    )
                retry_after = parse_retry_after(response.headers.get("retry-after"))
            if attempt == policy.max_attempts:
                break
            wait = policy.wait(attempt, self._rng, retry_after=retry_after, rate_limited=status == 429)
            if self._monotonic() - started + wait > policy.deadline:
                break
            logger.warning("%s: %s; retrying in %.2fs", what, reason, wait)
            self._sleep(wait)
        logger.error("%s gave no usable answer (last: %s)", what, reason)
        raise TokenEndpointError(f"{what} gave no usable answer (last: {reason})", status=status, retryable=True)
