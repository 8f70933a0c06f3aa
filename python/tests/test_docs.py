"""docs/python.md: its complete example runs as printed there, against a
private broker, and prints exactly the lines its `# ->` comments say; the
page names every public name of the package."""

import os
import re
import subprocess
import sys

import sockbus
import sockbus.aio
from conftest import IO_S

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DOC = os.path.join(REPO, "docs", "python.md")


def doc_text():
    with open(DOC, encoding="utf-8") as f:
        return f.read()


def example():
    text = doc_text()
    start = text.index("## A complete example")
    end = text.find("\n## ", start + 1)
    section = text[start:end if end >= 0 else len(text)]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 1, "the example is one python block"
    return blocks[0]


def test_example_runs_as_printed(broker):
    code = example()
    expected = [m.strip() for m in re.findall(r"#\s*->\s*(.+)$", code, re.M)]
    assert len(expected) >= 8
    env = dict(os.environ, SOCKBUS_SOCKET=broker.socket,
               PYTHONPATH=os.path.join(REPO, "python"))
    r = subprocess.run([sys.executable, "-c", code], cwd="/", env=env, capture_output=True,
                       timeout=6 * IO_S)
    out = r.stdout.decode()
    assert r.returncode == 0, f"{out}{r.stderr.decode()}"
    assert out.splitlines() == expected, out


def test_every_public_name_is_on_the_page():
    text = doc_text()
    names = set(sockbus.__all__) - {"SYSTEM_SOCKET", "subject_valid", "pattern_valid",
                                     "pattern_match", "Connection", "Subscription", "Error"}
    missing = sorted(n for n in names if f"`{n}" not in text and f"{n}(" not in text)
    assert not missing, f"docs/python.md does not mention {missing}"
    for method in ("publish", "subscribe", "unsubscribe", "request", "flush", "close",
                   "take_dropped", "max_payload", "next"):
        assert f"{method}(" in text, method
