from __future__ import annotations

import contextlib
import json
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pdconnect import (
    Cancelled,
    Connected,
    EventsApi,
    KeyType,
    Origin,
    Region,
    build_install_url,
    parse_install_callback,
)
from pdconnect.errors import CallbackError, HandshakeFailed, PdConnectError, UnsafeURLError
from pdconnect.install import MAX_TARGETS
from tests.conftest import APP_ID, OTHER_SERVICE_KEY, REDIRECT_URL, RULESET_KEY, SERVICE_KEY

# The example from PagerDuty's "Events Integration" page, with real-shaped keys.
DOC_CONFIG: dict[str, Any] = {
    "integration_keys": [
        {"integration_key": SERVICE_KEY, "name": "Super Cool Service", "id": "PD12345", "type": "service"},
        {"integration_key": RULESET_KEY, "name": "Global Event Rules", "id": "PD6789A", "type": "global_rule_set"},
        {"integration_key": OTHER_SERVICE_KEY, "name": "B Team's Rules", "id": "PDBCDEF", "type": "team_rule_set"},
    ],
    "account": {"subdomain": "dev-acme", "Name": "Acme Monitoring"},
}


def _query(config: object) -> str:
    raw = config if isinstance(config, str) else json.dumps(config)
    return urlencode({"config": raw})


def test_build_url() -> None:
    url = build_install_url(app_id=APP_ID, redirect_url=REDIRECT_URL + "?state=abc")
    parts = urlsplit(url)
    assert (parts.netloc, parts.path) == ("app.pagerduty.com", "/install/integration")
    assert parse_qs(parts.query) == {
        "app_id": [APP_ID],
        "redirect_url": [REDIRECT_URL + "?state=abc"],
        "version": ["2"],
    }
    assert quote(REDIRECT_URL + "?state=abc", safe="") in url


def test_build_url_on_an_account_subdomain_or_another_base() -> None:
    assert build_install_url(app_id=APP_ID, redirect_url=REDIRECT_URL, subdomain="acme").startswith(
        "https://acme.pagerduty.com/install/integration?"
    )
    assert build_install_url(app_id=APP_ID, redirect_url=REDIRECT_URL, base_url="http://127.0.0.1:9/").startswith(
        "http://127.0.0.1:9/install/integration?"
    )


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"redirect_url": "http://vendor.example/cb"}, UnsafeURLError),
        ({"redirect_url": "https://vendor.example/cb#f"}, UnsafeURLError),
        ({"subdomain": "Acme.evil"}, UnsafeURLError),
        ({"subdomain": "acme", "base_url": "http://127.0.0.1:9"}, ValueError),
        ({"app_id": ""}, ValueError),
    ],
)
def test_build_url_refusals(kwargs: dict[str, str], error: type[Exception]) -> None:
    args = {"app_id": APP_ID, "redirect_url": REDIRECT_URL, **kwargs}
    with pytest.raises(error):
        build_install_url(**args)


def test_parse_the_documented_example() -> None:
    outcome = parse_install_callback(_query(DOC_CONFIG), owner_id="org-9", region=Region.EU)
    assert isinstance(outcome, Connected)
    assert outcome.flow is Origin.INSTALL
    assert [i.integration_key for i in outcome.integrations] == [SERVICE_KEY, RULESET_KEY, OTHER_SERVICE_KEY]
    first, second, third = outcome.integrations
    assert (first.service_name, first.service_id, first.target_type) == ("Super Cool Service", "PD12345", "service")
    assert (second.key_type, second.target_type) == (KeyType.RULESET, "global_rule_set")
    assert third.target_type == "team_rule_set"
    for integration in outcome.integrations:
        assert integration.account == "dev-acme"
        assert integration.account_name == "Acme Monitoring"
        assert integration.events_api is EventsApi.V2
        assert integration.origin is Origin.INSTALL
        assert integration.owner_id == "org-9"
        assert integration.region is Region.EU


def test_lowercase_name_as_implementations_read_it() -> None:
    config = {**DOC_CONFIG, "account": {"subdomain": "dev-acme", "name": "Lower"}}
    assert parse_install_callback(_query(config), owner_id="o").integrations[0].account_name == "Lower"  # type: ignore[union-attr]


def test_only_required_fields() -> None:
    config = {"integration_keys": [{"integration_key": SERVICE_KEY}], "account": {"subdomain": "a"}}
    integration = parse_install_callback(_query(config), owner_id="o").integrations[0]  # type: ignore[union-attr]
    assert integration.service_name is None and integration.account_name is None and integration.target_type is None


def test_null_optional_fields_are_absent() -> None:
    config = {"integration_keys": [{"integration_key": SERVICE_KEY, "name": None}], "account": {"subdomain": "a"}}
    assert parse_install_callback(_query(config), owner_id="o").integrations[0].service_name is None  # type: ignore[union-attr]


def test_vendor_parameters_next_to_config_are_ignored() -> None:
    query = _query(DOC_CONFIG) + "&state=x&workspace=acme"
    assert isinstance(parse_install_callback(query, owner_id="o"), Connected)


def test_error_parameter() -> None:
    assert parse_install_callback("error=cancelled", owner_id="o") == Cancelled(owner_id="o", flow=Origin.INSTALL)
    with pytest.raises(HandshakeFailed):
        parse_install_callback("error=denied", owner_id="o")


def _entry(**changes: object) -> dict[str, Any]:
    entry: dict[str, Any] = {"integration_key": SERVICE_KEY, "name": "S", "id": "P1", "type": "service"}
    entry.update(changes)
    return {k: v for k, v in entry.items() if v is not ...}


def _config(entries: object = None, account: object = None) -> dict[str, Any]:
    return {
        "integration_keys": [_entry()] if entries is None else entries,
        "account": {"subdomain": "dev-acme", "name": "Acme"} if account is None else account,
    }


BAD_CONFIGS = [
    pytest.param("", "missing the 'config'", id="no config"),
    pytest.param("config=", "'config' parameter is empty", id="empty config"),
    pytest.param(_query(_config()) + "&" + _query(_config()), "repeats the 'config'", id="repeated config"),
    pytest.param(_query("not json"), "not valid JSON", id="not JSON"),
    pytest.param(_query('{"integration_keys": [}'), "not valid JSON", id="broken JSON"),
    pytest.param(_query("[" * 5000 + "]" * 5000), "not valid JSON|nested too deeply", id="deep nesting"),
    pytest.param(_query('{"a": NaN}'), "not valid JSON", id="NaN"),
    pytest.param(_query('{"account": {}, "account": {}}'), "repeated member", id="duplicate member"),
    pytest.param(_query("[]"), "config must be a JSON object", id="array"),
    pytest.param(_query('"text"'), "config must be a JSON object", id="string"),
    pytest.param(_query({"account": {"subdomain": "a"}}), "integration_keys must be a list", id="no keys"),
    pytest.param(_query(_config(entries={})), "integration_keys must be a list", id="keys object"),
    pytest.param(_query(_config(entries=[])), "integration_keys is empty", id="empty keys"),
    pytest.param(_query(_config(entries=[_entry()] * (MAX_TARGETS + 1))), "more than 100", id="too many keys"),
    pytest.param(_query(_config(entries=["x"])), r"integration_keys\[0\] must be a JSON object", id="entry string"),
    pytest.param(
        _query(_config(entries=[_entry(integration_key=...)])), r"\[0\].integration_key is missing", id="no key"
    ),
    pytest.param(_query(_config(entries=[_entry(integration_key=5)])), "must be a string", id="numeric key"),
    pytest.param(_query(_config(entries=[_entry(integration_key="abc")])), "32 characters", id="short key"),
    pytest.param(_query(_config(entries=[_entry(name=7)])), r"\[0\].name must be a string", id="numeric name"),
    pytest.param(_query(_config(entries=[_entry(name="")])), r"\[0\].name is empty", id="empty name"),
    pytest.param(_query(_config(entries=[_entry(name="x" * 300)])), "longer than 255", id="long name"),
    pytest.param(_query(_config(entries=[_entry(id="a\u0007")])), r"\[0\].id contains control", id="BEL in id"),
    pytest.param(_query(_config(entries=[_entry(type=["service"])])), r"\[0\].type must be a string", id="list type"),
    pytest.param(_query({"integration_keys": [_entry()]}), "config.account must be a JSON object", id="no account"),
    pytest.param(_query(_config(account=[])), "config.account must be a JSON object", id="account list"),
    pytest.param(_query(_config(account={"name": "A"})), "subdomain is missing", id="no subdomain"),
    pytest.param(_query(_config(account={"subdomain": ""})), "subdomain is empty", id="empty subdomain"),
    pytest.param(
        _query(_config(account={"subdomain": "a", "Name": 3})), "account.Name must be a string", id="bad Name"
    ),
    pytest.param("config=" + "x" * 70_000, "longer than 65536", id="over-long config"),
]


@pytest.mark.parametrize(("query", "message"), BAD_CONFIGS)
def test_malformed_callbacks_raise_a_typed_error_naming_the_problem(query: str, message: str) -> None:
    with pytest.raises(CallbackError, match=message) as info:
        parse_install_callback(query, owner_id="o")
    assert SERVICE_KEY not in str(info.value)


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20) | st.just(SERVICE_KEY),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)
_entries = st.fixed_dictionaries(
    {"integration_key": st.one_of(st.just(SERVICE_KEY), st.just(RULESET_KEY), _json_values)},
    optional={"name": _json_values, "id": _json_values, "type": _json_values},
)
_configs = st.fixed_dictionaries(
    {},
    optional={
        "integration_keys": st.one_of(st.lists(_entries, max_size=3), _json_values),
        "account": st.one_of(
            st.fixed_dictionaries({}, optional={"subdomain": _json_values, "name": _json_values}), _json_values
        ),
    },
)


@given(_configs)
def test_any_json_config_gives_integrations_or_our_error(config: dict[str, Any]) -> None:
    try:
        outcome = parse_install_callback(_query(config), owner_id="o")
    except PdConnectError:
        return
    assert isinstance(outcome, Connected)
    assert outcome.integrations


@given(st.text(max_size=300))
def test_any_config_text_gives_integrations_or_our_error(raw: str) -> None:
    with contextlib.suppress(PdConnectError):
        parse_install_callback(urlencode({"config": raw}), owner_id="o")


# -- one bad entry among good ones (issue 9): keep the good, report the bad ---------------------

_BAD_ENTRIES = [
    pytest.param("x", None, r"\[1\] must be a JSON object", id="string"),
    pytest.param(None, None, r"\[1\] must be a JSON object", id="null"),
    pytest.param(_entry(integration_key=...), "S", r"\[1\].integration_key is missing", id="no key"),
    pytest.param(_entry(integration_key=5), "S", "must be a string", id="numeric key"),
    pytest.param(_entry(integration_key=SERVICE_KEY[:-1]), "S", "32 characters", id="short key"),
    pytest.param(_entry(integration_key=SERVICE_KEY + "\ud800"), "S", r"\[1\]", id="surrogate"),
    pytest.param(_entry(), "S", r"\[1\].integration_key repeats", id="repeat key"),
    pytest.param(_entry(integration_key=RULESET_KEY, name=7), None, r"\[1\].name must be a string", id="numeric name"),
    pytest.param(_entry(integration_key=RULESET_KEY, name="a\x00b"), None, "control", id="NUL in name"),
    pytest.param(_entry(integration_key=RULESET_KEY, name="\ud800"), None, "invalid characters", id="surrogate name"),
    pytest.param(_entry(integration_key=RULESET_KEY, name="x" * 300), None, "longer than 255", id="long name"),
    pytest.param(_entry(integration_key=RULESET_KEY, id={"a": 1}), "S", r"\[1\].id", id="object id"),
    pytest.param(_entry(integration_key=RULESET_KEY, type=["s"]), "S", r"\[1\].type", id="list type"),
]


@pytest.mark.parametrize(("bad", "name", "reason"), _BAD_ENTRIES)
def test_one_bad_entry_is_left_out_and_reported(bad: object, name: str | None, reason: str) -> None:
    entries = [_entry(), bad, _entry(integration_key=OTHER_SERVICE_KEY, name="Database")]
    outcome = parse_install_callback(_query(_config(entries=entries)), owner_id="o")
    assert isinstance(outcome, Connected)
    assert [i.integration_key for i in outcome.integrations] == [SERVICE_KEY, OTHER_SERVICE_KEY]
    (rejected,) = outcome.rejected
    assert rejected.index == 1
    assert rejected.service_name == name
    assert __import__("re").search(reason, rejected.reason)
    for key in (SERVICE_KEY, RULESET_KEY, OTHER_SERVICE_KEY, SERVICE_KEY[:-1]):
        assert key not in rejected.reason
        assert key not in repr(outcome.rejected)


def test_every_entry_bad_is_still_a_callback_error_naming_the_first() -> None:
    entries = [_entry(integration_key="abc"), "x"]
    with pytest.raises(CallbackError, match=r"\[0\].integration_key") as info:
        parse_install_callback(_query(_config(entries=entries)), owner_id="o")
    assert "abc" not in str(info.value)


def test_a_clean_callback_rejects_nothing() -> None:
    outcome = parse_install_callback(_query(DOC_CONFIG), owner_id="o")
    assert isinstance(outcome, Connected)
    assert outcome.rejected == ()


@given(st.lists(st.one_of(_entries, _json_values), min_size=1, max_size=5))
def test_every_entry_is_kept_or_reported_exactly_once(entries: list[Any]) -> None:
    try:
        outcome = parse_install_callback(_query(_config(entries=entries)), owner_id="o")
    except CallbackError:
        return
    assert isinstance(outcome, Connected)
    assert len(outcome.integrations) + len(outcome.rejected) == len(entries)
    assert len({i.integration_key for i in outcome.integrations}) == len(outcome.integrations)
    assert sorted(r.index for r in outcome.rejected) == [r.index for r in outcome.rejected]
    for rejected in outcome.rejected:
        assert SERVICE_KEY not in rejected.reason and RULESET_KEY not in rejected.reason
