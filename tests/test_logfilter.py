"""The access-log filter: callback secrets never reach a log line, whatever shape the record has."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from urllib.parse import quote, urlencode

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from pdconnect.logfilter import REDACTED, RedactSecrets
from tests.conftest import OTHER_SERVICE_KEY, SERVICE_KEY

STATE = "eyJ2IjoxLCJmIjoiaW5zdGFsbCJ9.Z1x2aQ.c2lnbmF0dXJlLW9mLXRoZS1zdGF0ZQ"
CONFIG = json.dumps(
    {
        "integration_keys": [
            {"integration_key": SERVICE_KEY, "name": "Web", "id": "P1", "type": "service"},
            {"integration_key": OTHER_SERVICE_KEY, "name": "DB", "id": "P2", "type": "service"},
        ],
        "account": {"subdomain": "acme", "name": "Acme"},
    }
)
SECRETS = (SERVICE_KEY, OTHER_SERVICE_KEY, STATE)


def _record(msg: str, args: object) -> logging.LogRecord:
    return logging.LogRecord("werkzeug", logging.INFO, __file__, 1, msg, args, None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "line",
    [
        f"GET /pagerduty/callback/{STATE}?account=acme&service_key={SERVICE_KEY}&service_name=Web HTTP/1.1",
        f"GET /pagerduty/callback?state={STATE}&{urlencode({'config': CONFIG})} HTTP/1.1",
        f"GET /pagerduty/callback?state={STATE}&config={CONFIG} HTTP/1.1",  # decoded, as Werkzeug logs it
        f"GET /pagerduty/callback?{urlencode({'config': CONFIG})}&state={STATE} HTTP/2",
        f"GET /pagerduty/callback?STATE={STATE}&Service_Key={SERVICE_KEY} HTTP/1.0",
        f"GET /cb?x=1;state={STATE};service_key={SERVICE_KEY} HTTP/1.1",
        f'"GET /pagerduty/callback?code={SERVICE_KEY} HTTP/1.1" 302 - "https://acme.example/?state={STATE}" "UA"',
        f"GET /pagerduty/callback?service_key%3D{SERVICE_KEY} HTTP/1.1",
        f"referer: https://app.example/x#{SERVICE_KEY}",
        f"GET /pagerduty/callback?routing_key={SERVICE_KEY}\r\n",
        f"POST /other?data={SERVICE_KEY.upper()} HTTP/1.1",
        f"GET /pagerduty/callback/{STATE} HTTP/1.1",
        f"GET /pagerduty/callback?state={quote(STATE)}&error=cancelled HTTP/1.1",
    ],
)
def test_a_tuple_record_is_redacted(line: str) -> None:
    record = _record('%s - - "%s" %s %s', ("127.0.0.1", line, "302", "-"))
    assert RedactSecrets().filter(record) is True
    message = record.getMessage()
    for secret in (*SECRETS, SERVICE_KEY.upper()):
        assert secret not in message
    assert REDACTED in message


def test_what_is_not_secret_is_kept() -> None:
    line = f"GET /pagerduty/callback?state={STATE}&service_key={SERVICE_KEY}&service_name=Web&account=acme HTTP/1.1"
    message = RedactSecrets().redact(line)
    assert message == (
        f"GET /pagerduty/callback?state={REDACTED}&service_key={REDACTED}&service_name=Web&account=acme HTTP/1.1"
    )


def test_a_gunicorn_style_mapping_record_is_redacted() -> None:
    atoms = {
        "r": f"GET /pagerduty/callback?service_key={SERVICE_KEY} HTTP/1.1",
        "q": f"state={STATE}&config={quote(CONFIG)}",
        "U": f"/pagerduty/callback/{STATE}",
        "f": f"https://monitoring.acme.example/pagerduty/callback?service_key={SERVICE_KEY}",
        "s": "302",
        "b": 0,
    }
    record = logging.LogRecord("gunicorn.access", logging.INFO, __file__, 1, "%(r)s %(q)s %(U)s %(f)s", None, None)
    record.args = atoms
    RedactSecrets().filter(record)
    message = record.getMessage()
    for secret in SECRETS:
        assert secret not in message
    assert atoms["b"] == 0


def test_secrets_in_the_message_itself_and_odd_args() -> None:
    record = _record(f"callback {SERVICE_KEY} %s %d", (b"raw", 3))
    RedactSecrets().filter(record)
    assert SERVICE_KEY not in record.getMessage()
    assert record.args == (b"raw", 3)


def test_other_32_character_runs_can_be_kept() -> None:
    request_id = "0123456789abcdef0123456789abcdef"
    assert RedactSecrets(any_key=False).redact(f"id={request_id}") == f"id={request_id}"
    assert RedactSecrets().redact(f"id={request_id}") == f"id={REDACTED}"
    assert RedactSecrets(any_key=False).redact(f"?service_key={SERVICE_KEY}") == f"?service_key={REDACTED}"


@given(
    prefix=st.text(max_size=40),
    key=st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=32, max_size=32),
    name=st.sampled_from(["service_key", "routing_key", "config", "state", "code", "STATE"]),
    suffix=st.text(max_size=40),
)
def test_a_secret_parameter_never_survives(prefix: str, key: str, name: str, suffix: str) -> None:
    for line in (f"{prefix}?{name}={key}&{suffix}", f"{prefix} /x?a=1&{name}={key}", f"{prefix}/callback/{key}"):
        assert key not in RedactSecrets().redact(line)


@given(st.text())
def test_any_text_is_redacted_without_error(text: str) -> None:
    record = _record("%s", (text,))
    assert RedactSecrets().filter(record) is True
    record.getMessage()


# -- against Werkzeug's real server: what its access log writes --------------------------------


@pytest.fixture
def server_url() -> Iterator[str]:
    @Request.application  # type: ignore[arg-type]
    def app(request: Request) -> Response:
        return Response("ok")

    server = make_server("127.0.0.1", 0, app)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join()


def test_werkzeugs_access_log_is_redacted(server_url: str, caplog: pytest.LogCaptureFixture) -> None:
    access = logging.getLogger("werkzeug")
    redactor = RedactSecrets()
    access.addFilter(redactor)
    try:
        with caplog.at_level(logging.INFO, logger="werkzeug"):
            query = urlencode({"state": STATE, "config": CONFIG})
            requests.get(f"{server_url}/pagerduty/callback?{query}", timeout=10)
            requests.get(f"{server_url}/pagerduty/callback/{STATE}?service_key={SERVICE_KEY}", timeout=10)
    finally:
        access.removeFilter(redactor)
    lines = [record.getMessage() for record in caplog.records if record.name == "werkzeug"]
    assert len(lines) == 2
    for line in lines:
        assert "/pagerduty/callback" in line
        for secret in SECRETS:
            assert secret not in line
