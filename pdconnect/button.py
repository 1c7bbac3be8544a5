"""The "Alert with PagerDuty" button: safe HTML and a self-contained snippet to paste.

The button is a real link (``<a href>``) with a visible text label, our own inline SVG bell
(not PagerDuty's artwork), and CSS scoped under the ``pdconnect-button`` class: no script and
no external file. It comes in three sizes and a light and a dark variant, and shows a clear
focus ring for keyboard users. Every input is escaped.

Pages with a Content-Security-Policy that forbids inline styles can render the button with
``include_css=False`` and serve :func:`button_css` from their own stylesheet.
"""

from __future__ import annotations

from enum import StrEnum
from urllib.parse import urlsplit

from markupsafe import Markup

from pdconnect.errors import UnsafeURLError

DEFAULT_LABEL = "Alert with PagerDuty"


class ButtonSize(StrEnum):
    """How big the button is."""

    SMALL = "small"
    MEDIUM = "medium"
    LARGE = "large"


class ButtonTheme(StrEnum):
    """Light (green on any light page) or dark (for dark pages)."""

    LIGHT = "light"
    DARK = "dark"


# A bell, drawn for pdconnect: body, rim and clapper in one path, 24x24 grid.
_BELL_PATH = (
    "M12 2.25c-.83 0-1.5.67-1.5 1.5v.63A6.25 6.25 0 0 0 5.75 10.5v3.69l-1.6 2.56"
    "A.9.9 0 0 0 4.9 18.1h14.2a.9.9 0 0 0 .75-1.35l-1.6-2.56V10.5A6.25 6.25 0 0 0 13.5 4.38"
    "v-.63c0-.83-.67-1.5-1.5-1.5ZM9.4 19.6a2.6 2.6 0 0 0 5.2 0Z"
)

_CSS = """\
.pdconnect-button{display:inline-flex;align-items:center;gap:.5em;box-sizing:border-box;\
font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;\
font-weight:600;line-height:1.2;text-decoration:none;border-radius:6px;border:2px solid transparent;\
cursor:pointer;white-space:nowrap;vertical-align:middle}
.pdconnect-button__icon{width:1.25em;height:1.25em;flex:none;fill:currentColor}
.pdconnect-button--small{font-size:13px;padding:5px 10px}
.pdconnect-button--medium{font-size:15px;padding:8px 14px}
.pdconnect-button--large{font-size:18px;padding:11px 20px}
.pdconnect-button--light{background:#06752c;color:#fff}
.pdconnect-button--light:hover{background:#045a21;color:#fff}
.pdconnect-button--dark{background:#14191f;color:#fff;border-color:#3ddc84}
.pdconnect-button--dark .pdconnect-button__icon{fill:#3ddc84}
.pdconnect-button--dark:hover{background:#222a33;color:#fff}
.pdconnect-button:focus{outline:3px solid #2563eb;outline-offset:2px}
.pdconnect-button:focus:not(:focus-visible){outline:none}
.pdconnect-button:focus-visible{outline:3px solid #2563eb;outline-offset:2px}
"""


def button_css() -> str:
    """The button's stylesheet, for pages that serve CSS from a file."""
    return _CSS


def check_button_href(href: str) -> str:
    """Return ``href`` if a button may link to it: http(s) or a path on the same site.

    Refuses ``javascript:``, ``data:`` and other schemes, protocol-relative ``//host`` links,
    backslashes and control characters, with :class:`~pdconnect.errors.UnsafeURLError`.
    """
    if not isinstance(href, str) or not href.strip():
        raise UnsafeURLError("the button's link must be a non-empty string")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in href) or "\\" in href:
        raise UnsafeURLError("the button's link must not contain control characters or backslashes")
    if href.startswith("/"):
        if href.startswith("//"):
            raise UnsafeURLError("the button's link must not be protocol-relative")
        return href
    try:
        parts = urlsplit(href)
    except ValueError as exc:
        raise UnsafeURLError("the button's link is not a valid URL") from exc
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UnsafeURLError("the button's link must be an http(s) URL or a path starting with '/'")
    return href


def button_html(
    href: str,
    *,
    label: str = DEFAULT_LABEL,
    size: ButtonSize | str = ButtonSize.MEDIUM,
    theme: ButtonTheme | str = ButtonTheme.LIGHT,
    include_css: bool = True,
) -> Markup:
    """Return the button as safe HTML linking to ``href``.

    ``href`` is normally the vendor's own route that starts the handshake (for example
    ``/pagerduty/connect``). ``label`` is escaped. With ``include_css`` the markup starts
    with the (small) scoped ``<style>`` block, so it renders correctly anywhere.
    """
    size = ButtonSize(size)
    theme = ButtonTheme(theme)
    href = check_button_href(href)
    anchor = Markup(
        '<a class="pdconnect-button pdconnect-button--{size} pdconnect-button--{theme}" href="{href}">'
        '<svg class="pdconnect-button__icon" viewBox="0 0 24 24" width="20" height="20" '
        'aria-hidden="true" focusable="false"><path d="{path}"/></svg>'
        '<span class="pdconnect-button__label">{label}</span></a>'
    ).format(size=size.value, theme=theme.value, href=href, path=_BELL_PATH, label=label)
    if not include_css:
        return anchor
    return Markup("<style>{css}</style>").format(css=Markup(_CSS)) + anchor  # noqa: S704 -- our constant


def embed_snippet(
    href: str,
    *,
    label: str = DEFAULT_LABEL,
    size: ButtonSize | str = ButtonSize.MEDIUM,
    theme: ButtonTheme | str = ButtonTheme.LIGHT,
) -> str:
    """Return one self-contained block of HTML to paste into any page or template.

    No script, no external file: a comment saying what it is, the scoped stylesheet and the
    link. ``href`` should be the vendor's route that starts the handshake.
    """
    anchor = button_html(href, label=label, size=size, theme=theme, include_css=False)
    return (
        "<!-- Alert with PagerDuty button, from pdconnect. Self-contained: no scripts, "
        "no external files. -->\n"
        f"<style>\n{_CSS}</style>\n"
        f"{anchor}\n"
    )
