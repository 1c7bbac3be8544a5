"""Render the button's variants in headless Chromium and save PNGs for the docs.

    .venv/bin/pip install playwright
    .venv/bin/python docs/_tools/render_button.py

Uses Debian's Chromium (``/usr/bin/chromium``) through Playwright's ``executable_path``; no
browser is downloaded.
"""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import sync_playwright

from pdconnect import button_css, button_html

OUT = Path(__file__).resolve().parent.parent / "_static"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]


def page_for(theme: str) -> str:
    background = "#ffffff" if theme == "light" else "#0d1117"
    buttons = "".join(
        f'<div style="margin:12px">{button_html("/pagerduty/connect", size=size, theme=theme, include_css=False)}</div>'
        for size in ("small", "medium", "large")
    )
    return (
        f"<!doctype html><html><head><style>{button_css()}</style></head>"
        f'<body style="margin:0;background:{background}"><div id="shot" style="display:inline-block;padding:8px">'
        f"{buttons}</div></body></html>"
    )


def main() -> None:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(device_scale_factor=2)
        for theme in ("light", "dark"):
            page.set_content(page_for(theme))
            page.locator("#shot").screenshot(path=str(OUT / f"button-{theme}.png"))
        page.set_content(page_for("light"))
        page.keyboard.press("Tab")
        page.locator("#shot").screenshot(path=str(OUT / "button-focus.png"))
        browser.close()


if __name__ == "__main__":
    main()
