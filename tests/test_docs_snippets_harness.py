"""The docs-snippet harness itself: its parser refuses malformed pages, its runner isolates them.

Hostile pages first (a table, then Hypothesis), then what a page's code may and may not do:
reach anything but loopback, leak names, environment or defaults into the next page.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pdconnect.handshake import Handshake
from pdconnect.urls import CONNECT_BASE_URL, INSTALL_BASE_URL
from tests import test_docs_snippets as harness
from tests.docs_snippets import Command, SnippetSyntaxError, parse_page, read_page
from tests.test_docs_snippets import _refusal, run_page

# --- parsing ----------------------------------------------------------------------------------


def test_blocks_are_read_in_order_with_their_page_lines() -> None:
    page = parse_page(
        "# Title\n"
        "\n"
        "```python\n"
        "a = 1\n"
        "```\n"
        "```console\n"
        "$ pdconnect --help\n"
        "```\n"
        "- a list item\n"
        "\n"
        "  ```py\n"
        "  if a:\n"
        "      b = 2\n"
        "  ```\n"
        "~~~pycon\n"
        ">>> a + 1\n"
        "2\n"
        "~~~\n"
        "````python\n"
        "text = '''\n"
        "```\n"
        "'''\n"
        "````\n"
        "```{image} _static/x.png\n"
        "```\n"
    )
    assert [(s.kind, s.line) for s in page.snippets] == [("python", 4), ("python", 12), ("pycon", 16), ("python", 20)]
    assert page.snippets[1].code == "if a:\n    b = 2\n"
    assert page.snippets[3].code == "text = '''\n```\n'''\n"
    assert page.setups == set()


def test_directives_are_read() -> None:
    page = parse_page(
        "<!-- snippet-setup: names, sandbox -->\n"
        "<!-- snippet: hidden\n"
        "monitor = 7\n"
        "-->\n"
        '<!-- snippet: skip reason="needs Django" -->\n'
        "\n"
        "```python\n"
        "import django\n"
        "```\n"
        "```python\n"
        "print(monitor)\n"
        "```\n"
        "```console\n"
        "<!-- snippet: not a directive inside a block -->\n"
        "```\n"
    )
    assert page.setups == {"names", "sandbox"}
    assert [(s.kind, s.line, s.skip_reason) for s in page.snippets] == [
        ("hidden", 3, None),
        ("python", 8, "needs Django"),
        ("python", 11, None),
    ]
    assert [s.code for s in page.runnable] == ["monitor = 7\n", "print(monitor)\n"]


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ('<!-- snippet: skip reason="" -->\n```python\nx\n```\n', 1, "needs a reason"),
        ('<!-- snippet: skip reason="   " -->\n```python\nx\n```\n', 1, "needs a reason"),
        ("<!-- snippet: skip -->\n```python\nx\n```\n", 1, "not a snippet directive"),
        ('<!-- snippet: skp reason="typo" -->\n```python\nx\n```\n', 1, "not a snippet directive"),
        ("<!-- snippet-setup: database -->\n", 1, "unknown snippet-setup ['database']"),
        ("<!-- snippet-setup: names sandbox\u00a0 flask -->\n", 1, "unknown snippet-setup ['flask']"),
        ("<!-- snippet-setup: -->\n", 1, "names nothing"),
        ("<!-- snippet-setup names -->\n", 1, "not a snippet directive"),
        ('text\n<!-- snippet: skip reason="r" -->\nprose\n```python\nx\n```\n', 2, "right before a Python block"),
        ('<!-- snippet: skip reason="r" -->\n```console\n$ ls\n```\n', 1, "right before a Python block"),
        ('<!-- snippet: skip reason="r" -->\n', 1, "right before a Python block"),
        ('<!-- snippet: skip reason="a" -->\n<!-- snippet: skip reason="b" -->\n```python\n```\n', 1, "right before"),
        ("\n\n```python\nx = 1\n", 3, "never closed"),
        ("````python\nx = 1\n```\n", 1, "never closed"),
        ("<!-- snippet: hidden\nx = 1\n", 1, "closing -->"),
        ("<!-- snippet: hidden\nx = 1 -->\n", 1, "closing -->"),
        ("<!-- snippet: hidden\nwhile x-->0: pass\n-->\n", 1, "closing -->"),
        ("<!-- snippet: hidden -->\n", 1, "not a snippet directive"),
        ("<!-- snippet: \ud800 -->\n", 1, "not a snippet directive"),
        ("<!-- snippet: \x00skip -->\n", 1, "not a snippet directive"),
    ],
)
def test_malformed_pages_are_refused_with_the_line(text: str, line: int, message: str) -> None:
    with pytest.raises(SnippetSyntaxError) as caught:
        parse_page(text, path="docs/bad.md")
    assert caught.value.line == line
    assert str(caught.value).startswith(f"docs/bad.md:{line}: ")
    assert message in str(caught.value)


def test_a_page_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    page = tmp_path / "bad.md"
    page.write_bytes(b"# Title\n\n```python\nx = '\xff\xfe'\n```\n")
    with pytest.raises(SnippetSyntaxError, match="not UTF-8") as caught:
        read_page(page)
    assert caught.value.line == 4


_code_line = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")
)


@given(
    prose=st.lists(st.sampled_from(["", "Some prose.", "<!-- an ordinary comment -->", "| a | table |"]), max_size=5),
    code=st.lists(_code_line.filter(lambda s: not s.lstrip().startswith(("```", "~~~"))), max_size=8),
    language=st.sampled_from(["python", "py", "python3", "pycon", "Python"]),
)
def test_any_block_comes_back_exactly_at_its_line(prose: list[str], code: list[str], language: str) -> None:
    text = "\n".join([*prose, f"```{language} title", *code, "```", "after"]) + "\n"
    page = parse_page(text)
    [snippet] = page.snippets
    assert snippet.line == len(prose) + 2
    assert snippet.code == "".join(line + "\n" for line in code)
    assert snippet.kind == ("pycon" if language == "pycon" else "python")


@given(st.text(max_size=200))
def test_any_text_parses_or_is_refused_with_a_line(text: str) -> None:
    lines = len(text.splitlines())
    refused_at: int | None = None
    try:
        page = parse_page(text)
    except SnippetSyntaxError as exc:
        refused_at = exc.line
    else:
        assert all(1 <= s.line <= lines + 1 for s in page.snippets)
    assert refused_at is None or 1 <= refused_at <= max(1, lines)


# --- running ----------------------------------------------------------------------------------


def _run(text: str, request: pytest.FixtureRequest, workdir: Path) -> dict[str, Any]:
    return run_page(parse_page(text, path=workdir / "page.md"), request=request, workdir=workdir)


def _fails(text: str, request: pytest.FixtureRequest, workdir: Path) -> str:
    with pytest.raises(pytest.fail.Exception) as caught:
        _run(text, request, workdir)
    return str(caught.value)


def test_a_page_runs_in_order_in_one_namespace_and_its_own_directory(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    cwd = os.getcwd()
    namespace = _run(
        "```python\nimport os\nfirst = os.getcwd()\n```\n"
        "<!-- snippet: hidden\nsecond = first + '!'\n-->\n"
        '<!-- snippet: skip reason="never runs" -->\n```python\nraise SystemExit(3)\n```\n'
        "```pycon\n>>> len(second) == len(first) + 1\nTrue\n```\n"
        "```python\nfrom dataclasses import dataclass\n\n@dataclass\nclass Point:\n    x: 'int'\n\np = Point(1)\n```\n",
        request,
        tmp_path,
    )
    assert namespace["first"] == str(tmp_path)
    assert namespace["p"].x == 1
    assert os.getcwd() == cwd


_block = st.tuples(st.sampled_from(["python", "hidden", "skip", "pycon"]), st.sampled_from("abc"), st.integers())


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(blocks=st.lists(_block, max_size=6))
def test_blocks_run_in_reading_order_and_skips_never_run(
    blocks: list[tuple[str, str, int]], request: pytest.FixtureRequest
) -> None:
    text, expected = "", {}
    for kind, name, value in blocks:
        if kind == "hidden":
            text += f"<!-- snippet: hidden\n{name} = {value}\n-->\n"
        elif kind == "pycon":
            text += f"```pycon\n>>> {name} = {value}\n>>> {name}\n{value}\n```\n"
        else:
            text += '<!-- snippet: skip reason="r" -->\n' if kind == "skip" else ""
            text += f"```python\n{name} = {value}\n```\n"
        if kind != "skip":
            expected[name] = value
    with tempfile.TemporaryDirectory() as workdir:
        namespace = _run(text, request, Path(workdir))
    assert {name: namespace[name] for name in "abc" if name in namespace} == expected


def test_a_new_page_starts_from_an_empty_namespace(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    _run("```python\nleft_over = 1\n```\n", request, tmp_path)
    assert "left_over" in _fails("```python\nleft_over\n```\n", request, tmp_path)


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("1 / 0", "ZeroDivisionError"),
        ("import not_a_dependency_of_pdconnect", "ModuleNotFoundError"),
        ("def f(:\n    pass", "SyntaxError"),
        ("x = '\ud800'\nx.encode()", "UnicodeEncodeError"),
        ("x = 1\x00", "null"),
        ("raise SystemExit(2)", "SystemExit: 2"),
        ("import sys\nsys.exit('bye')", "SystemExit: bye"),
        ("float('nan') + undefined_name", "NameError"),
    ],
)
def test_a_broken_snippet_fails_naming_the_page_and_line(
    code: str, expected: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    message = _fails(f"# Title\n\n```python\n{code}\n```\n", request, tmp_path)
    assert "page.md, the python block at line 4 fails" in message
    assert expected in message
    assert "test_docs_snippets.py" not in message  # the harness's own frames are left out


def test_a_wrong_session_output_fails(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    message = _fails("```pycon\n>>> 1 + 1\n3\n```\n", request, tmp_path)
    assert "Expected:\n    3\nGot:\n    2" in message


@pytest.mark.parametrize(
    "code",
    [
        "import socket\nsocket.getaddrinfo('events.pagerduty.com', 443)",
        "import socket\nsocket.create_connection(('192.0.2.1', 443), timeout=1)",
        "import socket\nsocket.create_connection(('::ffff:8.8.8.8', 53), timeout=1)",
        "import urllib.request\nurllib.request.urlopen('https://app.pagerduty.com/', timeout=1)",
    ],
)
def test_without_the_sandbox_nothing_leaves_loopback(code: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    message = _fails(f"```python\n{code}\n```\n", request, tmp_path)
    assert "only loopback is allowed" in message


def test_without_the_sandbox_a_sender_reaches_no_pagerduty_host(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    refused: list[object] = []
    guarded = socket.getaddrinfo

    def watched(host: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return guarded(host, *args, **kwargs)
        except OSError:
            refused.append(host)
            raise

    monkeypatch.setattr(socket, "getaddrinfo", watched)
    message = _fails(
        "```python\n"
        "from pdconnect import RetryPolicy, Sender, integration_from_key\n"
        "key = integration_from_key('e93facc04764012d7bfb002500d5d1a6', owner_id='o')\n"
        "Sender(retry=RetryPolicy(max_attempts=1)).trigger(key, 'Down', source='x', severity='critical')\n"
        "```\n",
        request,
        tmp_path,
    )
    assert "DeliveryFailed" in message
    assert refused == ["events.pagerduty.com"]


def test_with_the_sandbox_default_urls_reach_it_and_are_restored(
    request: pytest.FixtureRequest, tmp_path: Path, pagerduty_sandbox: Any
) -> None:
    namespace = _run(
        "<!-- snippet-setup: sandbox, names -->\n"
        "```python\n"
        "from flask import Flask\n"
        "from pdconnect import Handshake, Sender\n"
        "from pdconnect.flask import PagerDutyConnect\n"
        "url = Handshake(secret=SECRET_KEY, app_id='P6LEX1U', vendor_key='v').install_url(\n"
        "    'https://acme.example/cb', owner_id=org_id, session_binding='b' * 32)\n"
        "Sender().trigger(integration, 'Down', source='web-1', severity='critical', dedup_key='web-1')\n"
        "app = Flask(__name__)\n"
        "app.config.update(SECRET_KEY=SECRET_KEY, PDCONNECT_STORAGE_URL=DATABASE_URL)\n"
        "PagerDutyConnect(app)\n"
        "```\n",
        request,
        tmp_path,
    )
    sandbox_url = pagerduty_sandbox.url
    assert namespace["url"].startswith(sandbox_url + "/install/integration?")
    assert len(pagerduty_sandbox.received()) == 1
    assert pagerduty_sandbox.incident_for("web-1")["status"] == "triggered"
    config = namespace["app"].config
    assert {config[f"PDCONNECT_{n}_BASE_URL"] for n in ("CONNECT", "INSTALL", "EVENTS")} == {sandbox_url}
    assert config["PDCONNECT_REST_API_URL"] == sandbox_url
    # ...and once the page is done, PagerDuty's defaults are back.
    assert Handshake.__init__.__kwdefaults__ is not None
    assert Handshake.__init__.__kwdefaults__["connect_base_url"] == CONNECT_BASE_URL
    assert Handshake.__init__.__kwdefaults__["install_base_url"] == INSTALL_BASE_URL
    assert "PAGERDUTY_SANDBOX_URL" not in os.environ


def test_with_the_explicit_sandbox_a_page_must_point_at_it_itself(
    request: pytest.FixtureRequest, tmp_path: Path, pagerduty_sandbox: Any
) -> None:
    start = (
        "<!-- snippet-setup: sandbox-explicit, names -->\n"
        "```python\n"
        "from pdconnect import Handshake\n"
        "pagerduty_sandbox.register_app('P6LEX1U', ['https://acme.example/cb'])\n"
        "handshake = Handshake(secret=SECRET_KEY, app_id='P6LEX1U'{configured})\n"
        "url = handshake.install_url('https://acme.example/cb', owner_id=org_id, session_binding='b' * 32)\n"
        "redirect = pagerduty_sandbox.install(url)\n"
        "```\n"
    )
    namespace = _run(start.format(configured=", install_base_url=PAGERDUTY_SANDBOX_URL"), request, tmp_path)
    assert namespace["redirect"].startswith("https://acme.example/cb?")
    # Left to its defaults, the handshake sends the browser to PagerDuty itself: the page fails.
    message = _fails(start.format(configured=""), request, tmp_path)
    assert "https://app.pagerduty.com/install/integration?" in message and "is not on this sandbox" in message


def test_names_are_harmless_and_the_environment_is_restored(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    before = dict(os.environ)
    namespace = _run(
        "<!-- snippet-setup: names -->\n"
        "```python\n"
        "import os\n"
        "os.environ['LEFT_BY_A_SNIPPET'] = '1'\n"
        "secret, database = os.environ['SECRET_KEY'], os.environ['DATABASE_URL']\n"
        "```\n",
        request,
        tmp_path,
    )
    assert namespace["secret"] == namespace["SECRET_KEY"] and len(namespace["SECRET_KEY"]) >= 32
    assert namespace["database"] == namespace["DATABASE_URL"] == f"sqlite:///{tmp_path / 'docs.db'}"
    assert namespace["org_id"] == namespace["owner_id"] == namespace["integration"].owner_id == "org-1"
    assert dict(os.environ) == before


def test_logging_set_up_by_a_page_is_put_back(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    werkzeug = logging.getLogger("werkzeug")
    root = logging.getLogger()
    before = (werkzeug.filters[:], werkzeug.level, root.handlers[:], root.level)
    _run(
        "```python\n"
        "import logging\n"
        "logging.getLogger('werkzeug').addFilter(logging.Filter('x'))\n"
        "logging.getLogger('werkzeug').setLevel(logging.ERROR)\n"
        "logging.basicConfig(level=logging.DEBUG, force=True)\n"
        "logging.getLogger('docs.snippet.new').addHandler(logging.NullHandler())\n"
        "logging.disable(logging.CRITICAL)\n"
        "```\n",
        request,
        tmp_path,
    )
    assert (werkzeug.filters, werkzeug.level, root.handlers, root.level) == before
    assert logging.getLogger("docs.snippet.new").handlers == []
    assert logging.getLogger("pdconnect").isEnabledFor(logging.WARNING)


def test_test_functions_are_called_with_names_from_the_page(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    namespace = _run(
        "```python\ncalls = []\nwidget = 'w'\n\ndef test_widget(widget):\n    calls.append(widget)\n```\n",
        request,
        tmp_path,
    )
    assert namespace["calls"] == ["w"]
    assert "needs ['nothing_here']" in _fails(
        "```python\ndef test_x(nothing_here):\n    pass\n```\n", request, tmp_path
    )
    assert "AssertionError" in _fails("```python\ndef test_x():\n    assert 1 == 2\n```\n", request, tmp_path)


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (
            "from flask import Flask\napp = Flask(__name__)\n\n@app.get('/')\ndef index():\n    raise RuntimeError('x')\n",
            "answers GET / with 500",
        ),
        (
            "from werkzeug.wrappers import Response\n\ndef app(environ, start_response):\n"
            "    return Response('down', status=503)(environ, start_response)\n",
            "answers GET / with 503",
        ),
    ],
)
def test_an_app_the_page_leaves_is_asked_for_its_front_page(
    code: str, expected: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    assert expected in _fails(f"```python\n{code}```\n", request, tmp_path)


def test_a_working_app_passes(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    _run("```python\nfrom flask import Flask\napp = Flask(__name__)\napp = app\n```\n", request, tmp_path)


def test_engines_the_page_opened_are_disposed(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    namespace = _run(
        "<!-- snippet-setup: names -->\n```python\nwith engine.connect():\n    pass\n```\n", request, tmp_path
    )
    assert namespace["engine"].pool.checkedin() == 0


def test_the_loopback_guard_is_on() -> None:
    with pytest.raises(OSError, match="only loopback"):
        socket.getaddrinfo("pagerduty.com", 443)


# --- pdconnect command lines ------------------------------------------------------------------


def test_command_lines_are_read_from_shell_blocks() -> None:
    page = parse_page(
        "```console\n"
        "$ pdconnect snippet --theme dark\n"
        "<!-- Alert with PagerDuty button -->\n"
        "pdconnect: an error line is output, not a command\n"
        'pdconnect worker --database "$DATABASE_URL" \\\n'
        "    --concurrency 16   # a comment\n"
        "export X=1\n"
        "```\n"
        "```python\n"
        "pdconnect = 'not a command'\n"
        "```\n"
        "```bash\n"
        "pdconnect db init --database sqlite:///x.db\n"
        "```\n"
    )
    assert [(c.argv, c.line) for c in page.commands] == [
        (["snippet", "--theme", "dark"], 2),
        (["worker", "--database", "$DATABASE_URL", "--concurrency", "16"], 5),
        (["db", "init", "--database", "sqlite:///x.db"], 13),
    ]


@pytest.mark.parametrize(
    ("argv", "refused"),
    [
        (["snippet", "--theme", "dark"], None),
        (["--help"], None),
        (["outbox", "requeue", "--database", "$DATABASE_URL", "--all"], None),
        (["worker", "--database", "${DATABASE_URL}", "--concurrency", "16"], None),
        (["snippet", "--theme", "purple"], "invalid choice: 'purple'"),
        (["snipet"], "invalid choice: 'snipet'"),
        (["db", "init"], "the following arguments are required: --database"),
        (["worker", "--database", "$DATABASE_URL", "--concurrency", "many"], "--concurrency"),
        ([], "the following arguments are required: COMMAND"),
        (["snippet", "--href", "\ud800"], None),  # parsing only: the CLI's own tests check values
    ],
)
def test_a_command_the_cli_refuses_is_reported(argv: list[str], refused: str | None) -> None:
    reason = _refusal(Command(argv, 1))
    if refused is None:
        assert reason is None
    else:
        assert reason is not None and refused in reason


def test_an_unreadable_command_line_is_refused() -> None:
    with pytest.raises(SnippetSyntaxError, match="cannot read the command") as caught:
        parse_page("\n```console\n$ pdconnect snippet --label 'unclosed\n```\n")
    assert caught.value.line == 3


def test_a_refused_command_fails_its_page(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("```console\n$ pdconnect snippet --size huge\n```\n")
    with pytest.raises(AssertionError, match=r"page.md:2: pdconnect snippet --size huge\n  .*invalid choice: 'huge'"):
        harness.test_page_commands_parse(page)


# --- subprocesses a page starts are held to loopback too ---------------------------------------

SUBPROCESS_TARGETS = [
    "socket.create_connection(('192.0.2.1', 443), timeout=5)",  # TEST-NET-1: never a real host
    "socket.create_connection(('events.pagerduty.com', 443), timeout=5)",
    "socket.getaddrinfo('example.com', 443)",
    "socket.socket().connect_ex(('10.0.0.1', 80))",
    "socket.socket(socket.AF_INET6).connect(('2001:db8::1', 80))",
    "__import__('urllib.request').request.urlopen('http://169.254.169.254/', timeout=5)",
]


@pytest.mark.parametrize("code", SUBPROCESS_TARGETS)
def test_a_subprocess_of_a_page_cannot_leave_loopback(
    code: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    page = (
        "```python\n"
        "import subprocess, sys\n"
        f"child = subprocess.run([sys.executable, '-c', {f'import socket; {code}'!r}], capture_output=True, text=True)\n"
        "```\n"
    )
    namespace = _run(page, request, tmp_path)
    child = namespace["child"]
    assert child.returncode != 0
    assert "NetworkRefused" in child.stderr and "only loopback is allowed" in child.stderr, child.stderr


def test_a_subprocess_of_a_page_may_use_loopback(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    page = (
        "```python\n"
        "import socket, subprocess, sys\n"
        "server = socket.create_server(('127.0.0.1', 0))\n"
        "code = f'import socket; socket.create_connection((\"127.0.0.1\", {server.getsockname()[1]})).close()'\n"
        "child = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)\n"
        "server.close()\n"
        "```\n"
    )
    assert _run(page, request, tmp_path)["child"].returncode == 0


def test_the_guard_is_gone_after_the_page(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    before = os.environ.get("PYTHONPATH")
    _run("```python\nx = 1\n```\n", request, tmp_path)
    assert os.environ.get("PYTHONPATH") == before


def test_a_subprocess_of_a_page_loads_the_guard(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """Reaches nothing: the check that fails first, safely, if the guard is not passed on."""
    page = (
        "```python\n"
        "import subprocess, sys\n"
        "code = 'import socket; print(socket.socket.connect.__name__, socket.getaddrinfo.__name__)'\n"
        "child = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)\n"
        "```\n"
    )
    assert _run(page, request, tmp_path)["child"].stdout.split() == ["_connect", "_getaddrinfo"]


# --- what the guard wraps, and processes it could not reach ------------------------------------

GUARDED_CALLS = [
    "socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', ('192.0.2.1', 9))",
    "socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', 0, ('192.0.2.1', 9))",
    "socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendmsg([b'x'], [], 0, ('192.0.2.1', 9))",
    "socket.socket(socket.AF_INET6, socket.SOCK_DGRAM).sendto(b'x', ('2001:db8::1', 9))",
    # Numeric TEST-NET names: even without the guard they would reach no resolver.
    "socket.gethostbyname('192.0.2.1')",
    "socket.gethostbyname_ex('192.0.2.1')",
    "socket.gethostbyaddr('192.0.2.1')",
    "socket.getnameinfo(('192.0.2.1', 80), socket.NI_NUMERICHOST | socket.NI_NUMERICSERV)",
]


@pytest.mark.parametrize("code", GUARDED_CALLS)
def test_the_guard_refuses_datagrams_and_lookups_off_loopback(code: str) -> None:
    """Each is refused before a packet leaves: TEST-NET and documentation addresses only."""
    env = {**os.environ, "PYTHONPATH": str(harness.GUARD_DIR)}
    child = subprocess.run([sys.executable, "-c", f"import socket; {code}"], env=env, capture_output=True, text=True)
    assert child.returncode != 0
    assert "NetworkRefused" in child.stderr and "only loopback is allowed" in child.stderr, child.stderr


def test_the_guard_lets_datagrams_and_lookups_on_loopback_through() -> None:
    code = (
        "import socket; u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(('127.0.0.1', 0));"
        "assert u.sendto(b'x', u.getsockname()) == 1; assert socket.gethostbyname('localhost').startswith('127.')"
    )
    env = {**os.environ, "PYTHONPATH": str(harness.GUARD_DIR)}
    child = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert child.returncode == 0, child.stderr


BYPASSES = [
    "subprocess.run([sys.executable, '-I', '-c', 'pass'])",
    "subprocess.run([sys.executable, '-E', '-c', 'pass'])",
    "subprocess.run([sys.executable, '-S', '-c', 'pass'])",
    "subprocess.run([sys.executable, '-sI', '-c', 'pass'])",
    "subprocess.run([sys.executable, '-X', 'dev', '-ES', '-c', 'pass'])",
    "subprocess.run(['python3', '-I', '-c', 'pass'])",
    "subprocess.run([sys.executable, '-c', 'pass'], env={})",
    "subprocess.run([sys.executable, '-c', 'pass'], env={'PATH': os.environ['PATH']})",
    "subprocess.run(['true'], env={'PYTHONPATH': '/elsewhere'})",
    "subprocess.run('python3 -I -c pass', shell=True)",
    "subprocess.run('PYTHONPATH= python3 -c pass', shell=True)",
    "subprocess.run(['env', '-i', sys.executable, '-c', 'pass'])",
    "subprocess.run(['env', '-u', 'PYTHONPATH', sys.executable, '-c', 'pass'])",
    "os.system('python3 -S -c pass')",
    "os.posix_spawn(sys.executable, [sys.executable, '-c', 'pass'], os.environ)",
    "os.environ.pop('PYTHONPATH'); subprocess.run([sys.executable, '-c', 'pass'])",
]


@pytest.mark.parametrize("code", BYPASSES)
@pytest.mark.parametrize("caught", [False, True])
def test_a_page_that_starts_a_process_without_the_guard_fails(
    code: str, caught: bool, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    body = f"try:\n    {code}\nexcept OSError:\n    pass\n" if caught else f"{code}\n"
    page = f"```python\nimport os, subprocess, sys\n{body}```\n"
    with pytest.raises(pytest.fail.Exception, match=r"loopback guard|docs_guard|environment|os\.posix_spawn"):
        _run(page, request, tmp_path)


@pytest.mark.parametrize(
    "argv",
    [
        [sys.executable, "-c", "print(1)"],
        [sys.executable, "-c", "import sys; sys.argv == ['-I']", "-I"],
        [sys.executable, "-m", "pdconnect", "-E"],
        [sys.executable, "-X", "importtime", "-c", "pass"],
        [sys.executable, "-W", "ignore::DeprecationWarning:ES", "-c", "pass"],
        [sys.executable, "script.py", "-I"],
        ["pdconnect", "sandbox", "-S"],
        ["git", "status"],
    ],
)
def test_a_process_that_keeps_the_guard_is_allowed(argv: list[str]) -> None:
    env = {"PYTHONPATH": str(harness.GUARD_DIR)}
    assert harness.guard_bypass(argv, env) is None


@given(flags=st.lists(st.sampled_from("bBdEhiIOPqsSuvVx"), min_size=1, max_size=6))
def test_property_a_flag_cluster_is_refused_exactly_when_it_skips_site(flags: list[str]) -> None:
    cluster = "-" + "".join(flags)
    reason = harness.guard_bypass([sys.executable, cluster, "-c", "pass"], {"PYTHONPATH": str(harness.GUARD_DIR)})
    assert (reason is not None) == bool(set(flags) & set("IES"))
