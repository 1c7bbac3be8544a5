"""Sender cost: events a second on one thread, pdconnect against its peers, same endpoint, same run.

    .venv/bin/python -m benchmarks.sender_cost [--events 3000] [--rounds 3]

Every client sends the same trigger (summary, source, severity, dedup key) to the same fast
local endpoint (``fast_endpoint.py``, in its own process). PagerDuty's ``pagerduty`` package
accepts only https base URLs; its private URL attribute is set directly so that it, like every
other client here, talks plain HTTP to the same endpoint. Each figure is the median of the
rounds; ratios are to a bare ``requests.Session`` loop.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import time
import warnings
from collections.abc import Callable
from urllib.parse import urlsplit

import requests

from benchmarks.common import fast_endpoint, machine, table
from pdconnect import Sender
from pdconnect.transport import HttpClientTransport

KEY = "e93facc04764012d7bfb002500d5d1a6"


def body(i: int) -> bytes:
    return json.dumps(
        {
            "routing_key": KEY,
            "event_action": "trigger",
            "dedup_key": f"bench-{i}",
            "payload": {"summary": f"CPU high on web-{i % 50}", "source": f"web-{i % 50}", "severity": "critical"},
        }
    ).encode()


def bare_requests(url: str) -> Callable[[int], None]:
    session = requests.Session()
    headers = {"Content-Type": "application/json"}

    def send(i: int) -> None:
        response = session.post(url + "/v2/enqueue", data=body(i), headers=headers, timeout=(3, 10))
        response.raise_for_status()

    return send


def bare_http_client(url: str) -> Callable[[int], None]:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    headers = {"Content-Type": "application/json"}

    def send(i: int) -> None:
        connection.request("POST", "/v2/enqueue", body(i), headers)
        connection.getresponse().read()

    return send


def pagerduty_client(url: str) -> Callable[[int], None]:
    import pagerduty

    client = pagerduty.EventsApiV2Client(KEY)
    client._url = url

    def send(i: int) -> None:
        client.trigger(f"CPU high on web-{i % 50}", f"web-{i % 50}", dedup_key=f"bench-{i}", severity="critical")

    return send


def pdpyras_client(url: str) -> Callable[[int], None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pdpyras
    session = pdpyras.EventsAPISession(KEY)
    session.url = url

    def send(i: int) -> None:
        session.trigger(f"CPU high on web-{i % 50}", f"web-{i % 50}", dedup_key=f"bench-{i}", severity="critical")

    return send


def pdconnect_sender(url: str, *, fast: bool) -> Callable[[int], None]:
    sender = Sender(events_base_url=url, transport=HttpClientTransport() if fast else None)

    def send(i: int) -> None:
        sender.trigger(
            KEY, f"CPU high on web-{i % 50}", source=f"web-{i % 50}", severity="critical", dedup_key=f"bench-{i}"
        )

    return send


CLIENTS: list[tuple[str, Callable[[str], Callable[[int], None]]]] = [
    ("bare requests.Session loop", bare_requests),
    ("pdpyras 5 (EventsAPISession)", pdpyras_client),
    ("pagerduty 7 (EventsApiV2Client)", pagerduty_client),
    ("pdconnect Sender, requests transport (default)", lambda url: pdconnect_sender(url, fast=False)),
    ("pdconnect Sender, http.client transport", lambda url: pdconnect_sender(url, fast=True)),
    ("bare http.client loop", bare_http_client),
]


def rate(send: Callable[[int], None], events: int) -> float:
    for i in range(200):
        send(i)
    started = time.perf_counter()
    for i in range(events):
        send(i)
    return events / (time.perf_counter() - started)


def run(events: int = 3000, rounds: int = 3) -> str:
    results: dict[str, list[float]] = {name: [] for name, _ in CLIENTS}
    with fast_endpoint() as url:
        for _ in range(rounds):
            for name, make in CLIENTS:
                results[name].append(rate(make(url), events))
    medians = {name: statistics.median(values) for name, values in results.items()}
    base = medians["bare requests.Session loop"]
    pagerduty = medians["pagerduty 7 (EventsApiV2Client)"]
    rows = [
        [name, f"{value:,.0f}", f"{value / base:.2f}", f"{value / pagerduty:.2f}"] for name, value in medians.items()
    ]
    return (
        f"Sender cost, one thread, {events} triggers x {rounds} rounds (median), fast loopback endpoint; {machine()}\n\n"
        + table(["client", "events/s", "vs bare requests", "vs pagerduty"], rows)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(run(args.events, args.rounds))


if __name__ == "__main__":
    main()
