"""An attempt's total deadline: a server that dribbles its answer cannot outlast it (issue 9).

``requests`` and ``http.client`` apply a read timeout to each read from the socket, so a
server sending one byte a second never trips it. Both transports bound the whole answer by
``connect + read`` seconds. The clock is injected and steps one second each time a transport
reads it, so the deadline passes after a known number of reads; the server's pause between
bytes is the attack itself, never something a test waits on.
"""

from __future__ import annotations

import socketserver
import threading
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pdconnect import RetryPolicy, Sender
from pdconnect.errors import ConfigError, DeliveryFailed
from pdconnect.outbox import Outbox
from pdconnect.retry import Verdict
from pdconnect.transport import HttpClientTransport, RequestsTransport, Transport, TransportTimeout
from pdconnect.worker import Worker
from tests.conftest import SERVICE_KEY
from tests.servers import serving

BODY = b'{"status":"success","message":"Event processed","dedup_key":"k"}'
WHOLE = b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), BODY)
# An answer longer than any test waits for: its body never ends, as far as a client can tell.
ENDLESS = b"HTTP/1.1 202 Accepted\r\nContent-Length: 1000000\r\n\r\n" + b"x" * 1_000_000
# How slowly the hostile server sends each byte, in real seconds. Without a total deadline an
# attempt takes len(WHOLE) of these; with one, a few. No assertion reads the real time.
PAUSE = 0.01


class SteppingClock:
    """A monotonic clock that moves ``step`` seconds each time it is read."""

    def __init__(self, step: float = 1.0) -> None:
        self.now = 1000.0
        self.step = step
        self.reads = 0

    def __call__(self) -> float:
        self.now += self.step
        self.reads += 1
        return self.now


def _read_request(handler: socketserver.StreamRequestHandler) -> bool:
    """Read one request; ``False`` when the client closed the connection instead."""
    length = 0
    started = False
    while (line := handler.rfile.readline(65537)) not in (b"\r\n", b"\n", b""):
        started = True
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    handler.rfile.read(length)
    return started


@contextmanager
def dribbling_server(answer: bytes, *, head: int = 0) -> Iterator[str]:
    """A server that sends ``answer[:head]`` at once, then the rest one byte every :data:`PAUSE` s."""
    stop = threading.Event()

    class Dribble(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            # Keep-alive, as PagerDuty's servers: answer each request of the connection in turn.
            while _read_request(self):
                try:
                    self.wfile.write(answer[:head])
                    self.wfile.flush()
                    for position in range(head, len(answer)):
                        if stop.wait(PAUSE):  # the server is shutting down
                            return
                        self.wfile.write(answer[position : position + 1])
                        self.wfile.flush()
                except OSError:  # the client gave up and closed the connection: what it should do
                    return

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Dribble)
    server.daemon_threads = True
    with serving(server):
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}"
        finally:
            stop.set()


TRANSPORTS: dict[str, Callable[[SteppingClock], Transport]] = {
    "http.client": lambda clock: HttpClientTransport(clock=clock),
    "requests": lambda clock: RequestsTransport(clock=clock),
}

# (what dribbles, how much of the answer comes at once)
PHASES = {
    "the status line": 0,
    "the headers": WHOLE.index(b"Content-Type") + 3,
    "the body": WHOLE.index(b"\r\n\r\n") + 4,
    "the last byte": len(WHOLE) - 1,
}


@pytest.mark.parametrize("phase", PHASES)
@pytest.mark.parametrize("kind", TRANSPORTS)
def test_a_dribbled_answer_ends_in_a_timeout(kind: str, phase: str) -> None:
    clock = SteppingClock()
    with closing(TRANSPORTS[kind](clock)) as transport, dribbling_server(WHOLE, head=PHASES[phase]) as url:
        started = clock.now
        with pytest.raises(TransportTimeout, match=r"no complete answer within 3 s"):
            transport.post(url + "/v2/enqueue", b"{}", {"Content-Type": "application/json"}, (1.0, 2.0))
    assert clock.now - started <= 3.0 + 2 * clock.step, "no read started after the deadline"


@pytest.mark.parametrize("kind", TRANSPORTS)
def test_an_answer_in_time_is_read_whole_and_the_connection_kept(kind: str) -> None:
    clock = SteppingClock(step=0.0)  # time stands still: every deadline is far away
    with closing(TRANSPORTS[kind](clock)) as transport, dribbling_server(WHOLE, head=len(WHOLE)) as url:
        for _ in range(3):
            response = transport.post(url + "/v2/enqueue", b"{}", {}, (1.0, 2.0))
            assert (response.status, response.body) == (202, BODY)


@settings(max_examples=25, deadline=None)
@given(connect=st.floats(0.5, 30.0), read=st.floats(0.5, 30.0), step=st.floats(0.25, 10.0))
def test_no_read_starts_after_the_deadline_whatever_the_timeouts(connect: float, read: float, step: float) -> None:
    clock = SteppingClock(step)
    with closing(HttpClientTransport(clock=clock)) as transport, dribbling_server(ENDLESS) as url:
        started = clock.now
        # A step larger than the whole budget may already end the connect: a timeout too.
        with pytest.raises(TransportTimeout):
            transport.post(url + "/v2/enqueue", b"{}", {}, (connect, read))
    # One step to read the start, and the read that found the deadline passed.
    assert clock.now - started <= connect + read + 2 * step


@pytest.mark.parametrize("kind", TRANSPORTS)
def test_the_sender_reports_a_dribbled_answer_as_a_timeout(kind: str) -> None:
    clock = SteppingClock()
    with dribbling_server(WHOLE, head=PHASES["the body"]) as url:
        transport = TRANSPORTS[kind](clock)
        with Sender(
            events_base_url=url, transport=transport, retry=RetryPolicy.no_retries(), timeout=(1.0, 2.0)
        ) as sender:
            with pytest.raises(DeliveryFailed, match="timed out"):
                sender.trigger(SERVICE_KEY, "down", source="h", severity="error")
            outcome = sender.attempt(sender.prepare(SERVICE_KEY, _event()))
            assert outcome.verdict is Verdict.RETRY and "no complete answer within 3 s" in outcome.reason


def _event() -> object:
    from pdconnect.events import AlertEvent

    return AlertEvent.trigger("down", source="h", severity="error")


@pytest.mark.parametrize(
    ("timeout", "lease"),
    [((3.05, 10.0), 20.0), ((1.0, 60.0), 60.0), ((1.0, 600.0), 120.0), ((10.0, 10.0), 41.9)],
)
def test_a_worker_refuses_a_lease_its_attempts_could_outlast(timeout: tuple[float, float], lease: float) -> None:
    with Outbox("sqlite://") as outbox:
        sender = Sender(retry=RetryPolicy.no_retries(), timeout=timeout)
        with pytest.raises(ConfigError, match="lease must be at least"):
            Worker(outbox, sender=sender, lease=lease)
        sender.close()


@settings(max_examples=50, deadline=None)
@given(connect=st.floats(0.1, 600.0), read=st.floats(0.1, 600.0), lease=st.floats(1.0, 86400.0))
def test_a_worker_that_accepts_a_lease_ends_every_attempt_before_it(connect: float, read: float, lease: float) -> None:
    with Outbox("sqlite://") as outbox:
        sender = Sender(retry=RetryPolicy.no_retries(), timeout=(connect, read))
        try:
            worker = Worker(outbox, sender=sender, lease=lease)
        except ConfigError:
            return
        finally:
            sender.close()
        # An attempt starts only with lease_margin left, and ends within connect + read.
        assert worker.lease_margin > connect + read
        assert worker.lease >= worker.lease_margin
