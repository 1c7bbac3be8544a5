"""Acme's HTTP monitors cannot be aimed at Acme's own network (server-side request forgery).

Only loopback is ever connected to: names resolve through a stub (never real DNS), and where a
check would reach a public address the connection is recorded and refused instead.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from example_app import http_check
from example_app.config import load_config
from pdconnect.errors import ConfigError
from tests.servers import serving

LOOPBACK = http_check.parse_networks(["127.0.0.0/8"])

#: What a stub resolver answers for names, as a real one might (an attacker controls their DNS).
NAMES: dict[str, list[str]] = {
    "internal.example": ["10.0.0.5"],
    "metadata.example": ["169.254.169.254"],
    "mixed.example": ["93.184.216.34", "10.0.0.5"],
    "v6-loopback.example": ["::1"],
    "mapped.example": ["::ffff:127.0.0.1"],
    "localhost": ["127.0.0.1", "::1"],
    "public.example": ["93.184.216.34"],
}


@dataclass
class Network:
    """The stubbed network: what was resolved, and where a connection was attempted."""

    names: dict[str, list[str]] = field(default_factory=lambda: dict(NAMES))
    lookups: list[str] = field(default_factory=list)
    connections: list[tuple[str, int]] = field(default_factory=list)


@pytest.fixture
def net(monkeypatch: pytest.MonkeyPatch) -> Network:
    network = Network()
    real_connect, real_getaddrinfo = socket.create_connection, socket.getaddrinfo

    def getaddrinfo(host: str, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        try:  # socket.create_connection looks up the address it was given: no name, no record
            return real_getaddrinfo(str(ipaddress.ip_address(host)), port, *args, **kwargs)
        except ValueError:
            pass
        network.lookups.append(host)
        if host not in network.names:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        answer = network.names[host]
        if callable(answer):
            answer = answer()
        return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in answer]

    def create_connection(address: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
        network.connections.append(address)
        if not ipaddress.ip_address(address[0]).is_loopback:
            raise ConnectionRefusedError("the test network reaches loopback only")
        return real_connect(address, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)  # the module http_check uses
    monkeypatch.setattr(socket, "create_connection", create_connection)
    return network


@contextmanager
def server(
    answer: Callable[[BaseHTTPRequestHandler], tuple[int, dict[str, str]]], host: str = "127.0.0.1"
) -> Iterator[str]:
    """A loopback HTTP server answering GETs with ``answer(handler)``; yields its base URL."""
    seen: list[dict[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(dict(self.headers))
            status, headers = answer(self)
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer((host, 0), Handler)
    httpd.seen = seen  # type: ignore[attr-defined]
    with serving(httpd):
        yield f"http://{host}:{httpd.server_address[1]}"


HOSTILE = [
    # loopback, in every spelling the C library accepts
    "http://127.0.0.1/",
    "http://127.1/",
    "http://2130706433/",
    "http://0x7f.1/",
    "http://0x7f000001/",
    "http://017700000001/",
    "http://0177.0.0.1/",
    "http://[::1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:7f00:1]/",
    "http://[0:0:0:0:0:ffff:127.0.0.1]:8080/",
    "http://[2002:7f00:1::]/",  # 6to4 of 127.0.0.1
    "http://localhost/",
    "http://v6-loopback.example/",
    "http://mapped.example/",
    # unspecified (reaches the local host on Linux)
    "http://0/",
    "http://0.0.0.0/",
    "http://[::]/",
    # cloud metadata and link-local
    "http://169.254.169.254/latest/meta-data/",
    "http://[::ffff:169.254.169.254]/",
    "http://0xa9fea9fe/",
    "http://metadata.example/",
    "http://[fe80::1]/",
    # private, shared, multicast, reserved, broadcast
    "http://10.0.0.5/admin",
    "http://172.16.0.1/",
    "http://192.168.1.1/",
    "http://100.64.0.1/",
    "http://224.0.0.1/",
    "http://240.0.0.1/",
    "http://255.255.255.255/",
    "http://[fc00::1]/",
    "http://[ff02::1]/",
    "http://[64:ff9b::a00:5]/",  # NAT64 of 10.0.0.5
    "http://internal.example/",
    "http://mixed.example/",  # one public address does not excuse a private one
    "https://internal.example:8443/",
    # names that do not resolve, and URLs that are not http(s) with a host
    "http://nowhere.example/",
    "http://0x/",
    "http://1.2.3.4.5/",
    "file:///etc/passwd",
    "gopher://127.0.0.1:6379/_FLUSHALL",
    "ftp://internal.example/",
    "http:///path-only",
    "http://user:password@public.example/",
    "http://public.example\r\nX-Injected: 1/",
    "http://public.example/\r\nX-Injected: 1",
    "http://[::1/",
    "http://public.example:99999/",
    "http://\ud800/",
    "http://pub\x00lic.example/",
    "",
    "http://" + "a" * 5000 + ".example/",
]


@pytest.mark.parametrize("url", HOSTILE)
def test_hostile_targets_are_refused_without_a_connection(net: Network, url: str) -> None:
    outcome = http_check.fetch(url)
    assert outcome.status is None
    assert outcome.refused, outcome
    assert net.connections == []


@pytest.mark.parametrize("url", [u for u in HOSTILE if "example" not in u and u.startswith("http://")])
def test_literal_private_addresses_are_refused_when_the_monitor_is_saved(url: str) -> None:
    with pytest.raises(http_check.TargetRefused):
        http_check.check_url(url)


@pytest.mark.parametrize("url", ["http://internal.example/", "https://public.example/x", "http://93.184.216.34/"])
def test_saving_a_monitor_resolves_nothing(net: Network, url: str) -> None:
    http_check.check_url(url)  # a name is checked when it is resolved, at check time
    assert net.lookups == [] and net.connections == []


def test_a_public_address_is_connected_to_as_resolved(net: Network) -> None:
    outcome = http_check.fetch("http://public.example:8080/health")
    assert not outcome.refused and outcome.error == "ConnectionRefusedError"
    assert net.connections == [("93.184.216.34", 8080)]


def test_the_operator_can_allow_a_network(net: Network) -> None:
    with server(lambda _: (204, {})) as url:
        outcome = http_check.fetch(url + "/ok", networks=LOOPBACK)
    assert outcome.status == 204


def test_a_redirect_to_an_internal_address_is_refused(net: Network) -> None:
    with server(lambda _: (302, {"Location": "http://internal.example/admin"})) as url:
        outcome = http_check.fetch(url, networks=LOOPBACK)
    assert outcome.refused and "private" in (outcome.error or "")
    assert [host for host, _port in net.connections] == ["127.0.0.1"]


@pytest.mark.parametrize(
    "location",
    [
        "http://169.254.169.254/",
        "http://[::ffff:10.0.0.1]/",
        "http://2130706433:1/",
        "file:///etc/passwd",
        "//10.1.1.1/",
    ],
)
def test_a_redirect_from_an_allowed_host_elsewhere_is_refused(net: Network, location: str) -> None:
    allowed = http_check.parse_networks(["127.0.0.2/32"])
    with server(lambda _: (301, {"Location": location}), host="127.0.0.2") as url:
        outcome = http_check.fetch(url, networks=allowed)
    assert outcome.refused
    assert [host for host, _port in net.connections] == ["127.0.0.2"]


def test_redirects_on_the_same_host_are_followed_a_few_times(net: Network) -> None:
    def answer(handler: BaseHTTPRequestHandler) -> tuple[int, dict[str, str]]:
        hop = int(handler.path.strip("/") or 0)
        return (200, {}) if hop == 2 else (307, {"Location": f"/{hop + 1}"})

    with server(answer) as url:
        assert http_check.fetch(url, networks=LOOPBACK).status == 200
    with server(lambda h: (302, {"Location": h.path})) as url:
        looping = http_check.fetch(url, networks=LOOPBACK)
    assert looping.status is None and looping.reason == "too many redirects"
    assert len(net.connections) == 3 + http_check.MAX_REDIRECTS + 1


def test_dns_rebinding_cannot_switch_the_address_after_the_check(net: Network) -> None:
    """The name resolves once; the connection goes to that checked address, with the name as Host."""
    answers = iter([["127.0.0.2"]])
    net.names["rebind.example"] = lambda: next(answers, ["10.0.0.5"])  # type: ignore[assignment]
    with server(lambda _: (200, {}), host="127.0.0.2") as url:
        port = url.rsplit(":", 1)[1]
        outcome = http_check.fetch(f"http://rebind.example:{port}/", networks=http_check.parse_networks(["127.0.0.2"]))
    assert outcome.status == 200
    assert net.lookups == ["rebind.example"]
    assert net.connections == [("127.0.0.2", int(port))]


# -- properties ------------------------------------------------------------------------------

#: Networks nothing on the public internet lives in (RFC 6890 and friends), written out here
#: independently of the code under test.
SPECIAL = [
    ipaddress.ip_network(n)
    for n in [
        "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
        "192.0.0.0/24", "192.0.2.0/24", "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24",
        "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4", "::/128", "::1/128", "fc00::/7", "fe80::/10",
        "ff00::/8", "2001:db8::/32",
    ]
]  # fmt: skip


def _carried(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped or address.sixtofour:
            return address.ipv4_mapped or address.sixtofour  # type: ignore[return-value]
        if address in ipaddress.ip_network("64:ff9b::/96"):
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address


_special_addresses = st.sampled_from(SPECIAL).flatmap(lambda n: st.ip_addresses(network=n))
_mapped = _special_addresses.filter(lambda a: a.version == 4).map(lambda a: ipaddress.ip_address(f"::ffff:{a}"))


@settings(max_examples=300, deadline=None)
@given(address=st.one_of(st.ip_addresses(), _special_addresses, _mapped))
def test_no_special_address_is_ever_connected_to(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    attempts: list[Any] = []

    def refuse(target: Any, *args: Any, **kwargs: Any) -> socket.socket:
        attempts.append(target)
        raise ConnectionRefusedError

    def resolve(host: str, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
        return [(family, socket.SOCK_STREAM, 6, "", (str(address), port))]

    real_connect, real_resolve = socket.create_connection, socket.getaddrinfo
    socket.create_connection, socket.getaddrinfo = refuse, resolve  # type: ignore[assignment]
    try:
        by_name = http_check.fetch("http://target.example/")
        host = f"[{address}]" if address.version == 6 else str(address)
        by_address = http_check.fetch(f"http://{host}/")
    finally:
        socket.create_connection, socket.getaddrinfo = real_connect, real_resolve
    carried = _carried(address)
    if any(carried.version == n.version and carried in n for n in SPECIAL):
        assert attempts == [] and by_name.refused and by_address.refused
    if attempts:
        assert not any(carried.version == n.version and carried in n for n in SPECIAL)


@settings(max_examples=200, deadline=None)
@given(
    number=st.integers(0x7F000000, 0x7FFFFFFF) | st.integers(0x0A000000, 0x0AFFFFFF) | st.integers(0, 0xFFFFFF),
    spelling=st.sampled_from(["{:d}", "0x{:x}", "0{:o}", "0X{:X}"]),
)
def test_loopback_and_private_addresses_spelled_as_numbers_are_refused(number: int, spelling: str) -> None:
    url = f"http://{spelling.format(number)}/"
    with pytest.raises(http_check.TargetRefused):
        http_check.check_url(url)
    assert http_check.fetch(url).refused


# -- configuration ---------------------------------------------------------------------------


def test_allowed_networks_from_the_environment() -> None:
    config = load_config({"ACME_MONITOR_ALLOWED_NETWORKS": " 10.0.0.0/8, ::1 ,192.168.1.7"})
    assert [str(n) for n in config["ACME_MONITOR_ALLOWED_NETWORKS"]] == ["10.0.0.0/8", "::1/128", "192.168.1.7/32"]
    assert load_config({})["ACME_MONITOR_ALLOWED_NETWORKS"] == ()


@pytest.mark.parametrize("value", ["banana", "10.0.0.0/33", "10.0.0.0/8,,::g", "1.2.3.4/-1", "\ud800", "10.0.0.0/8;rm"])
def test_a_bad_allowed_network_is_a_config_error_naming_the_setting(value: str) -> None:
    with pytest.raises(ConfigError, match="ACME_MONITOR_ALLOWED_NETWORKS") as raised:
        load_config({"ACME_MONITOR_ALLOWED_NETWORKS": value})
    assert raised.value.setting == "ACME_MONITOR_ALLOWED_NETWORKS"


def test_a_unicode_host_is_refused_with_its_ascii_spelling_as_advice(net: Network) -> None:
    outcome = http_check.fetch("http://bücher.example/")
    assert outcome.refused and "xn--" in (outcome.error or "")
    net.names["xn--bcher-kva.example"] = ["127.0.0.1"]
    with server(lambda _: (200, {})) as url:
        port = url.rsplit(":", 1)[1]
        assert http_check.fetch(f"http://xn--bcher-kva.example:{port}/", networks=LOOPBACK).status == 200


@pytest.mark.parametrize("url", ["http://a..b.example/", "http://" + "a" * 64 + ".example/", "http://\u200b.example/"])
def test_a_host_no_resolver_could_take_is_refused(net: Network, url: str) -> None:
    assert http_check.fetch(url).refused
    assert net.lookups == [] and net.connections == []


def test_a_server_that_never_finishes_answering_is_cut_off_at_the_deadline(net: Network) -> None:
    """Per-read timeouts do not bound a trickle; the deadline does (here short, reads long)."""
    listener = socket.create_server(("127.0.0.1", 0))
    release = threading.Event()

    def hold() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.recv(65536)
            connection.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
            release.wait()

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    try:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/"
        outcome = http_check.fetch(url, networks=LOOPBACK, timeout=120, deadline=0.2)
    finally:
        release.set()
        holder.join(10)
        listener.close()
    assert outcome.status is None and outcome.error == "TimeoutError"
