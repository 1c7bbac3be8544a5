"""Read the Python snippets out of a Markdown page, with the directives that say how to run them.

The conventions themselves are described in ``tests/test_docs_snippets.py``; this module only
parses. A page is read line by line: fenced code blocks (backticks or tildes, at any indent, as
in a list item) and the ``<!-- snippet... -->`` comments outside them. Anything that looks like
a directive but is not one is an error, so a typo never turns a check off silently.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

#: Info strings of the blocks that are run: plain Python, and interactive sessions (doctest).
PYTHON_LANGUAGES = frozenset({"python", "py", "python3"})
SESSION_LANGUAGES = frozenset({"pycon"})

#: Info strings of shell blocks, whose ``pdconnect ...`` command lines (with or without a
#: ``$`` prompt) are parsed, not run.
SHELL_LANGUAGES = frozenset({"console", "bash", "sh", "shell", "shell-session"})

#: What a page may ask for in ``<!-- snippet-setup: ... -->``.
SETUPS = frozenset({"names", "sandbox", "sandbox-explicit"})

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_SETUP = re.compile(r"^\s*<!--\s*snippet-setup:(?P<names>.*?)-->\s*$")
_SKIP = re.compile(r'^\s*<!--\s*snippet:\s*skip\s+reason="(?P<reason>[^"]*)"\s*-->\s*$')
_HIDDEN = re.compile(r"^\s*<!--\s*snippet:\s*hidden\s*$")
_ANY_DIRECTIVE = re.compile(r"<!--\s*snippet")


class SnippetSyntaxError(ValueError):
    """A page's snippet directives cannot be read; the message names the page and line."""

    def __init__(self, path: Path | str, line: int, message: str) -> None:
        super().__init__(f"{path}:{line}: {message}")
        self.path = str(path)
        self.line = line


@dataclass(frozen=True)
class Snippet:
    """One block of code on a page: ``kind`` is ``python``, ``pycon`` or ``hidden``.

    ``line`` is the page's line number of the code's first line, so that a traceback can point
    into the page itself.
    """

    kind: str
    code: str
    line: int
    skip_reason: str | None = None


@dataclass(frozen=True)
class Command:
    """A ``pdconnect`` command line from a shell block: its words, and the page's line."""

    argv: list[str]
    line: int


@dataclass
class Page:
    """A page's snippets in reading order, its ``pdconnect`` commands, and the setups it asked for."""

    path: Path
    snippets: list[Snippet] = field(default_factory=list)
    commands: list[Command] = field(default_factory=list)
    setups: set[str] = field(default_factory=set)

    @property
    def skipped(self) -> list[Snippet]:
        return [s for s in self.snippets if s.skip_reason is not None]

    @property
    def runnable(self) -> list[Snippet]:
        return [s for s in self.snippets if s.skip_reason is None]


def read_page(path: Path) -> Page:
    """Parse the page at ``path``; raises :class:`SnippetSyntaxError` for a malformed one."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SnippetSyntaxError(path, raw[: exc.start].count(b"\n") + 1, "the page is not UTF-8") from None
    return parse_page(text, path=path)


def parse_page(text: str, *, path: Path | str = "<page>") -> Page:
    """Parse Markdown ``text``; raises :class:`SnippetSyntaxError` for a malformed directive."""
    page = Page(Path(path))
    lines = text.splitlines()
    pending_skip: tuple[int, str] | None = None
    index = 0
    while index < len(lines):
        line = lines[index]
        number = index + 1
        fence = _FENCE.match(line)
        if fence:
            end = _closing_fence(lines, index, fence.group("fence"))
            if end is None:
                raise SnippetSyntaxError(path, number, "a code block is never closed")
            words = fence.group("info").strip().split()
            language = words[0].lower() if words else ""
            if language in PYTHON_LANGUAGES or language in SESSION_LANGUAGES:
                body = _dedent(lines[index + 1 : end], fence.group("indent"))
                kind = "pycon" if language in SESSION_LANGUAGES else "python"
                reason = pending_skip[1] if pending_skip else None
                page.snippets.append(Snippet(kind, body, number + 1, reason))
                pending_skip = None
            elif pending_skip is not None:
                raise SnippetSyntaxError(path, pending_skip[0], "a skip must come right before a Python block")
            elif language in SHELL_LANGUAGES:
                page.commands += _commands(lines[index + 1 : end], number + 1, path=path)
            index = end + 1
            continue
        if _ANY_DIRECTIVE.search(line):
            if pending_skip is not None:
                raise SnippetSyntaxError(path, pending_skip[0], "a skip must come right before a Python block")
            if setup := _SETUP.match(line):
                page.setups |= _setup_names(setup.group("names"), path, number)
            elif skip := _SKIP.match(line):
                reason = skip.group("reason").strip()
                if not reason:
                    raise SnippetSyntaxError(path, number, 'a skip needs a reason: <!-- snippet: skip reason="..." -->')
                pending_skip = (number, reason)
            elif _HIDDEN.match(line):
                # Markdown ends the comment at the first "-->", wherever it is on the line: code
                # after it would be shown to readers.
                end = next((i for i in range(index + 1, len(lines)) if "-->" in lines[i]), None)
                if end is None or lines[end].strip() != "-->":
                    raise SnippetSyntaxError(path, number, "a hidden snippet needs a closing --> on a line of its own")
                page.snippets.append(Snippet("hidden", "\n".join(lines[index + 1 : end]) + "\n", number + 1))
                index = end + 1
                continue
            else:
                raise SnippetSyntaxError(path, number, f"not a snippet directive: {line.strip()[:80]!r}")
        elif line.strip() and pending_skip is not None:
            raise SnippetSyntaxError(path, pending_skip[0], "a skip must come right before a Python block")
        index += 1
    if pending_skip is not None:
        raise SnippetSyntaxError(path, pending_skip[0], "a skip must come right before a Python block")
    return page


def _commands(lines: list[str], first: int, *, path: Path | str) -> list[Command]:
    commands = []
    index = 0
    while index < len(lines):
        number, text = first + index, lines[index].strip()
        while text.endswith("\\") and index + 1 < len(lines):  # a command continued on the next line
            index += 1
            text = text[:-1] + " " + lines[index].strip()
        index += 1
        text = text.removeprefix("$ ")  # output lines do not start with the word pdconnect
        try:
            words = shlex.split(text, comments=True)
        except ValueError as exc:
            if text.lstrip().startswith("pdconnect"):
                raise SnippetSyntaxError(path, number, f"cannot read the command: {exc}") from None
            continue
        if words and words[0] == "pdconnect":
            commands.append(Command(words[1:], number))
    return commands


def _closing_fence(lines: list[str], start: int, fence: str) -> int | None:
    # CommonMark: the closing fence uses the same character, at least as many, and no info string.
    for index in range(start + 1, len(lines)):
        stripped = lines[index].strip()
        if stripped and set(stripped) == {fence[0]} and len(stripped) >= len(fence):
            return index
    return None


def _dedent(lines: list[str], indent: str) -> str:
    return "".join((line[len(indent) :] if line.startswith(indent) else line.lstrip()) + "\n" for line in lines)


def _setup_names(raw: str, path: Path | str, line: int) -> set[str]:
    names = {name for name in re.split(r"[\s,]+", raw.strip()) if name}
    if not names:
        raise SnippetSyntaxError(path, line, f"snippet-setup names nothing; choose from {sorted(SETUPS)}")
    if unknown := names - SETUPS:
        raise SnippetSyntaxError(path, line, f"unknown snippet-setup {sorted(unknown)}; choose from {sorted(SETUPS)}")
    return names
