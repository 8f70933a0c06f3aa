"""`pip install ./python` in a fresh venv, with no package index at all,
then the README's Python examples, verbatim, against a private broker.

The README's "From Python" section is the source: its ```sh block is the
install command, each ```python block is run as it stands with the venv's
interpreter (SOCKBUS_SOCKET names the private broker), and each
`print(...)  # OUTPUT` comment is a line the run must print.
"""

import os
import re
import shlex
import subprocess
import sys
import tarfile
import zipfile

import pytest

import sockbus
from conftest import IO_S

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def readme_section():
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        text = f.read()
    start = text.index("## From Python")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def blocks(section, lang):
    return re.findall(r"```" + lang + r"\n(.*?)```", section, re.S)


def offline_env(**extra):
    """The environment with no way to reach a package index: whatever
    the build needs must be here already."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(PIP_NO_INDEX="1", PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1",
               PYTHONDONTWRITEBYTECODE="1")
    env.pop("PYTHONPATH", None)
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    """A fresh venv with the package installed by the README's command."""
    where = tmp_path_factory.mktemp("venv")
    install = blocks(readme_section(), "sh")
    assert len(install) == 1, "the Python section has one install command"
    cmd = install[0].strip()
    assert cmd == "python3 -m venv venv && venv/bin/pip install ./python", cmd
    # The same two steps, with this interpreter (the one that has venv),
    # run from the repository as the README says.
    venv_dir = where / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv_dir)], check=True, timeout=300,
                   env=offline_env())
    pip = shlex.split(cmd.split("&&")[1])  # venv/bin/pip install ./python
    pip[0] = str(venv_dir / "bin" / "pip")
    r = subprocess.run(pip, cwd=REPO, env=offline_env(), capture_output=True, timeout=300)
    assert r.returncode == 0, r.stdout.decode() + r.stderr.decode()
    return venv_dir


def expected_lines(code):
    return [m.strip() for m in re.findall(r"print\(.*\)\s+#\s*(.+)$", code, re.M)]


def test_installed_package_is_the_source(venv):
    py = str(venv / "bin" / "python")
    r = subprocess.run([py, "-c", "import sockbus, sockbus.aio; print(sockbus.__file__, "
                        "sockbus.__version__)"], cwd="/", env=offline_env(),
                       capture_output=True, timeout=IO_S, check=True)
    where, version = r.stdout.decode().split()
    assert where.startswith(str(venv)) and version == sockbus.__version__


def test_readme_examples_run(venv, broker, cli):
    py = str(venv / "bin" / "python")
    examples = blocks(readme_section(), "python")
    assert len(examples) == 3, "pub/sub, request/reply, asyncio"
    env = offline_env(SOCKBUS_SOCKET=broker.socket)
    # the service the request/reply example talks to
    cli(["reply", "-s", broker.socket, "time.now", "--", "date"])
    with sockbus.connect(broker.socket) as bus:
        for _ in range(1000):
            try:
                bus.request("time.now", timeout=IO_S)
                break
            except sockbus.NoResponders:
                bus.flush()
    outputs = []
    for code in examples:
        r = subprocess.run([py, "-c", code], cwd="/", env=env, capture_output=True,
                           timeout=60)
        out = r.stdout.decode()
        assert r.returncode == 0, f"{code}\n---\n{out}{r.stderr.decode()}"
        for line in expected_lines(code):
            assert line in out.splitlines(), f"{line!r} not printed by:\n{code}\n---\n{out}"
        outputs.append(out.splitlines())
    # the request/reply example printed the date `sockbus reply` ran first
    date = subprocess.run(["date", "+%Y"], capture_output=True, check=True).stdout.decode()
    assert len(outputs[1]) == 2 and date.strip() in outputs[1][0]


def test_sdist_and_wheel_are_complete(tmp_path):
    """The backend's sdist holds what a build from it needs, and its wheel
    the whole package."""
    sys.path.insert(0, os.path.join(REPO, "python", "_build"))
    try:
        import sockbus_build
    finally:
        sys.path.pop(0)
    sdist = sockbus_build.build_sdist(str(tmp_path))
    with tarfile.open(tmp_path / sdist) as tf:
        names = set(tf.getnames())
    base = sdist[:-len(".tar.gz")]
    for need in ("pyproject.toml", "_build/sockbus_build.py", "PKG-INFO", "sockbus/__init__.py",
                 "sockbus/aio.py", "sockbus/py.typed", "README.md"):
        assert f"{base}/{need}" in names
    wheel = sockbus_build.build_wheel(str(tmp_path))
    assert wheel == f"sockbus-{sockbus.__version__}-py3-none-any.whl"
    with zipfile.ZipFile(tmp_path / wheel) as zf:
        names = set(zf.namelist())
        record = zf.read(f"sockbus-{sockbus.__version__}.dist-info/RECORD").decode()
    package = {f"sockbus/{n}" for n in os.listdir(os.path.join(REPO, "python", "sockbus"))
               if n.endswith((".py", ".typed"))}
    assert package <= names
    assert all(n in record for n in names)
