from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from hypothesis import given
from hypothesis import strategies as st
from markupsafe import Markup

from pdconnect import ButtonSize, ButtonTheme, button_css, button_html, embed_snippet
from pdconnect.errors import UnsafeURLError


class _Tree(HTMLParser):
    """Records start tags with their attributes, and the text inside <span>."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.label = ""
        self._in_span = False
        self.style = ""
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_span = tag == "span"
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        self._in_span = False
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_span:
            self.label += data
        if self._in_style:
            self.style += data


def _parse(html: str) -> _Tree:
    tree = _Tree()
    tree.feed(html)
    tree.close()
    return tree


def test_button_is_a_real_link_with_a_readable_label() -> None:
    html = button_html("/pagerduty/connect")
    assert isinstance(html, Markup)
    tree = _parse(str(html))
    tags = [tag for tag, _ in tree.tags]
    assert tags == ["style", "a", "svg", "path", "span"]
    anchor = tree.tags[1][1]
    assert anchor["href"] == "/pagerduty/connect"
    assert anchor["class"] == "pdconnect-button pdconnect-button--medium pdconnect-button--light"
    svg = tree.tags[2][1]
    assert svg["aria-hidden"] == "true"
    assert svg["focusable"] == "false"
    assert tree.label == "Alert with PagerDuty"


@pytest.mark.parametrize("size", list(ButtonSize))
@pytest.mark.parametrize("theme", list(ButtonTheme))
def test_sizes_and_themes_have_styles(size: ButtonSize, theme: ButtonTheme) -> None:
    tree = _parse(str(button_html("/c", size=size, theme=theme)))
    assert f"pdconnect-button--{size.value}" in tree.tags[1][1]["class"]  # type: ignore[operator]
    assert f".pdconnect-button--{size.value}{{" in tree.style
    assert f".pdconnect-button--{theme.value}{{" in tree.style


def test_string_options_work_and_bad_ones_fail() -> None:
    assert "pdconnect-button--large" in button_html("/c", size="large", theme="dark")
    with pytest.raises(ValueError):
        button_html("/c", size="huge")


def test_focus_style_is_visible() -> None:
    assert re.search(r"\.pdconnect-button:focus-visible\{outline:3px solid", button_css())


def test_without_css_for_strict_content_security_policies() -> None:
    html = str(button_html("/c", include_css=False))
    assert "<style" not in html
    assert html.startswith("<a ")


def test_every_input_is_escaped() -> None:
    html = str(button_html('https://v.example/c?a=1&b="x"<y>', label="<script>alert('x')</script> & co"))
    tree = _parse(html)
    assert tree.tags[1][1]["href"] == 'https://v.example/c?a=1&b="x"<y>'
    assert tree.label == "<script>alert('x')</script> & co"
    assert "<script>" not in html
    assert "&amp;b=&#34;x&#34;&lt;y&gt;" in html


@pytest.mark.parametrize(
    "href",
    [
        "javascript:alert(1)",
        "JAVASCRIPT:alert(1)",
        " javascript:alert(1)",
        "data:text/html,<b>x</b>",
        "vbscript:x",
        "//evil.example/connect",
        "/\\evil.example",
        "https:evil.example",
        "",
        "   ",
        "/c\nx",
        "connect",
    ],
)
def test_unsafe_links_are_refused(href: str) -> None:
    with pytest.raises(UnsafeURLError):
        button_html(href)


def test_snippet_is_self_contained() -> None:
    snippet = embed_snippet("https://vendor.example/pagerduty/connect", theme="dark", size="small")
    assert snippet.startswith("<!-- Alert with PagerDuty button")
    lowered = snippet.lower()
    for forbidden in ("<script", "src=", "url(", "@import", "<link", "onclick", "on" + "load"):
        assert forbidden not in lowered
    tree = _parse(snippet)
    assert [tag for tag, _ in tree.tags] == ["style", "a", "svg", "path", "span"]
    # The only absolute URL in the snippet is the link itself (and the SVG namespace-free markup).
    assert re.findall(r"https?://[^\s\"'<>]+", snippet) == ["https://vendor.example/pagerduty/connect"]


@given(st.text(alphabet=st.characters(blacklist_characters="\r\x00", blacklist_categories=["Cs"]), max_size=80))
def test_any_label_round_trips_through_an_html_parser(label: str) -> None:
    html = str(button_html("/pagerduty/connect", label=label, include_css=False))
    tree = _parse(html)
    assert [tag for tag, _ in tree.tags] == ["a", "svg", "path", "span"]
    assert tree.label == label
