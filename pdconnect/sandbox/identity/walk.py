"""Clicking through the sandbox's authorize pages without a browser, for scripts and tests.

:func:`approve` does what a user does on ``/oauth/authorize``: sign in as one user, then
approve (or deny) the app, and returns the URL the browser would be sent to, your
``redirect_uri`` with ``code`` and ``state`` (or ``error``). It reads the pages' own forms,
so it goes through the same checks a browser does, CSRF token included.
"""

from __future__ import annotations

from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import requests

DECISIONS = ("approve", "deny")


class WalkError(Exception):
    """The authorize pages answered something a user could not get past (the page's message)."""


class _Form(HTMLParser):
    """The hidden fields of a page's first form, and its error message if it is an error page."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: dict[str, str] = {}
        self.forms = 0
        self._in_error = False
        self.error = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "form":
            self.forms += 1
        elif tag == "input" and self.forms == 1 and attributes.get("type") == "hidden":
            self.fields[attributes.get("name") or ""] = attributes.get("value") or ""
        self._in_error = tag == "p" and "data-error" in attributes

    def handle_data(self, data: str) -> None:
        if self._in_error:
            self.error += data


def _read(response: requests.Response) -> dict[str, str]:
    page = _Form()
    page.feed(response.text)
    if response.status_code != 200 or page.forms == 0:
        raise WalkError(page.error or f"the authorize page answered {response.status_code}")
    return page.fields


def approve(
    base_url: str,
    authorize_url: str,
    *,
    user_id: str,
    decision: str = "approve",
    verify: bool | str = True,
    timeout: float = 10.0,
) -> str:
    """Sign in as ``user_id`` and ``decision`` ("approve" or "deny") the app; the callback URL.

    ``authorize_url`` must be on the sandbox at ``base_url`` (what your app would send the
    browser to). A request the sandbox sends straight back (a bad ``response_type``, missing
    PKCE) returns that callback URL too. Raises :class:`WalkError` with the page's message
    for an error page (unknown client, unregistered ``redirect_uri``, unknown user).
    """
    if decision not in DECISIONS:
        raise ValueError(f"decision must be one of {DECISIONS}")
    base, target = urlsplit(base_url), urlsplit(authorize_url)
    if (target.scheme, target.netloc) != (base.scheme, base.netloc) or target.path != "/oauth/authorize":
        raise ValueError("authorize_url must be the sandbox's /oauth/authorize")
    page_url = f"{base_url.rstrip('/')}/oauth/authorize"
    with requests.Session() as session:

        def get(url: str) -> requests.Response:
            return session.get(url, allow_redirects=False, timeout=timeout, verify=verify)

        def post(data: dict[str, str]) -> requests.Response:
            return session.post(page_url, data=data, allow_redirects=False, timeout=timeout, verify=verify)

        first = get(authorize_url)
        if first.status_code == 302:
            return first.headers["Location"]
        signed = post({**_read(first), "user": user_id, "decision": "signin"})
        if signed.status_code != 303:
            _read(signed)  # raises with the page's message
        consent = get(urljoin(page_url, signed.headers["Location"]))
        answer = post({**_read(consent), "decision": decision})
        if answer.status_code != 302:
            _read(answer)
            raise WalkError(f"the consent page answered {answer.status_code}")
        return answer.headers["Location"]
