"""``PDCONNECT_CALLBACK_URL`` follows ``ACME_BASE_URL``, so a production Acme's connect pages work as set up.

Before, a copied production Acme (``ACME_BASE_URL`` set, nothing else) answered 400 on its
connect pages until its operator also set ``PDCONNECT_CALLBACK_URL`` or ``PDCONNECT_ALLOWED_HOSTS``.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from example_app import create_app
from example_app.config import load_config
from pdconnect.errors import ConfigError

PRODUCTION = {"ACME_ENV": "production", "ACME_SECRET_KEY": "k" * 40}


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"ACME_BASE_URL": "https://monitoring.acme.example"}, "https://monitoring.acme.example/pagerduty/callback"),
        ({"ACME_BASE_URL": "https://monitoring.acme.example/"}, "https://monitoring.acme.example/pagerduty/callback"),
        ({"ACME_BASE_URL": "https://acme.example/monitoring"}, "https://acme.example/monitoring/pagerduty/callback"),
        ({"ACME_BASE_URL": "http://127.0.0.1:5000"}, "http://127.0.0.1:5000/pagerduty/callback"),
        (
            {"ACME_BASE_URL": "https://a.example", "PDCONNECT_CALLBACK_URL": "https://b.example/pd/cb"},
            "https://b.example/pd/cb",
        ),
        ({"ACME_BASE_URL": "https://a.example", "PDCONNECT_CALLBACK_URL": ""}, ""),
        ({}, None),
        ({"PDCONNECT_ALLOWED_HOSTS": "acme.example"}, None),
    ],
)
def test_the_callback_url_comes_from_the_base_url(environ: dict[str, str], expected: str | None) -> None:
    config = load_config({**PRODUCTION, **environ})
    assert config.get("PDCONNECT_CALLBACK_URL") == expected


@pytest.mark.parametrize(
    "base",
    ["javascript:alert(1)", "https://", "ftp://acme.example", "//acme.example", "acme.example", "http:///x", ""],
)
def test_a_base_url_that_is_no_web_address_is_refused(base: str) -> None:
    with pytest.raises(ConfigError, match="ACME_BASE_URL"):
        load_config({**PRODUCTION, "ACME_BASE_URL": base})


@given(
    host=st.from_regex(r"[a-z][a-z0-9-]{0,20}(\.[a-z][a-z0-9-]{0,20}){0,3}", fullmatch=True),
    scheme=st.sampled_from(["http", "https"]),
    port=st.one_of(st.none(), st.integers(1, 65535)),
)
def test_the_callback_is_always_on_the_base_url(host: str, scheme: str, port: int | None) -> None:
    base = f"{scheme}://{host}" + ("" if port is None else f":{port}")
    config = load_config({**PRODUCTION, "ACME_BASE_URL": base})
    assert config["PDCONNECT_CALLBACK_URL"] == f"{base}/pagerduty/callback"


def test_a_production_acme_with_only_its_base_url_starts_a_handshake(tmp_path: Path) -> None:
    environ = {**PRODUCTION, "ACME_BASE_URL": "https://monitoring.acme.example", "PDCONNECT_APP_ID": "PREAL01",
               "ACME_DATABASE_URL": f"sqlite:///{tmp_path / 'acme.db'}", "ACME_SCHEDULER": "off", "ACME_WORKER": "off"}  # fmt: skip
    app = create_app(environ=environ)
    client = app.test_client()
    base = "https://monitoring.acme.example"
    page = client.get("/signin", base_url=base).get_data(as_text=True)
    csrf = re.search(r'name="pdconnect_csrf" value="([^"]+)"', page)
    assert csrf
    signin = client.post("/signin", data={"name": "ops", "pdconnect_csrf": csrf.group(1)}, base_url=base)
    assert signin.status_code == 302
    started = client.get("/pagerduty/install", base_url=base)
    assert started.status_code == 302, started.get_data(as_text=True)[:300]
    location = parse_qs(urlsplit(started.headers["Location"]).query)
    assert any(f"{base}/pagerduty/callback" in value for values in location.values() for value in values)
