"""Test support: a real sockbusd on a private socket in a temporary
directory, started per test, and helpers to run the sockbus command.

The broker binary comes from $SOCKBUSD and the command from $SOCKBUS (set
by meson test). Readiness is a bounded wait: the socket is polled until it
accepts a connection and the broker has logged "listening on", for at most
$HARNESS_READY_MS (5000 by default). A broker is stopped by its pid, and
its exit status and log are checked as the C tests' harness does: exit 0,
no sanitizer report.
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Callable, List, Optional

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # the package from the source tree

import sockbus  # noqa: E402

READY_S = int(os.environ.get("HARNESS_READY_MS", "5000")) / 1000
# What a test waits for something that should happen at once, at most: a
# bound for a loaded machine, not a guess at how long things take.
IO_S = 10.0


def _binary(var: str, fallback: str) -> str:
    path = os.environ.get(var)
    if path:
        return path
    guess = os.path.join(HERE, "..", "..", "build", fallback)
    if os.path.exists(guess):
        return os.path.abspath(guess)
    pytest.exit(f"{var} is not set: run the tests with meson test (or set {var})", 2)
    raise AssertionError


def sockbusd_path() -> str:
    return _binary("SOCKBUSD", "broker/sockbusd")


def sockbus_path() -> str:
    return _binary("SOCKBUS", "tools/sockbus/sockbus")


def wait_until(cond: Callable[[], object], timeout: float = IO_S, what: str = "condition",
               step: float = 0.005) -> None:
    """Poll cond() until it is true, for at most `timeout` seconds."""
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(step)


def socket_accepts(path: str) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


class Broker:
    """A sockbusd of our own. start() may be called again after a stop or
    kill, on the same socket path (a restart)."""

    def __init__(self, directory: str, args: Optional[List[str]] = None,
                 socket_name: str = "s.sock") -> None:
        self.dir = directory
        self.socket = os.path.join(directory, socket_name)
        self.log = os.path.join(directory, "broker.log")
        self.args = list(args or [])
        self.proc: Optional[subprocess.Popen] = None
        self.starts = 0

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def _logged(self) -> str:
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def start(self, user: Optional[int] = None) -> "Broker":
        assert self.proc is None, "already running"
        mark = self._logged().count("listening on")
        log = open(self.log, "ab")
        kwargs = {}
        if user is not None:
            kwargs = dict(user=user, group=user, extra_groups=[])
        self.proc = subprocess.Popen([sockbusd_path(), "--socket", self.socket] + self.args,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=log, **kwargs)
        log.close()
        self.starts += 1
        end = time.monotonic() + READY_S
        while True:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self.proc = None
                raise AssertionError(f"sockbusd exited with {code}:\n{self._logged()}")
            if socket_accepts(self.socket) and self._logged().count("listening on") > mark:
                return self
            if time.monotonic() > end:
                self.kill()
                raise AssertionError(f"sockbusd not ready within {READY_S} s:\n{self._logged()}")
            time.sleep(0.005)

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, check: bool = True) -> int:
        """SIGTERM, wait (bounded), SIGKILL if needed; returns the status.
        With check, the broker must have exited 0 with a clean log."""
        if self.proc is None:
            return 0
        self.proc.send_signal(signal.SIGCONT)
        self.proc.terminate()
        try:
            code = self.proc.wait(IO_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.proc = None
        if check:
            text = self._logged()
            for bad in ("AddressSanitizer", "LeakSanitizer", "runtime error:"):
                assert bad not in text, f"sockbusd reported a sanitizer error:\n{text}"
            assert code == 0, f"sockbusd exited with {code}:\n{text}"
        return code

    def kill(self) -> None:
        """SIGKILL: the broker goes away without a word."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def client_count(self) -> int:
        with sockbus.connect(self.socket, name="probe") as bus:
            return json.loads(bus.request("$SYS.STATS", timeout=IO_S).data)["connections"]


@pytest.fixture
def tmpdir_short():
    """A short temporary directory (socket paths are limited to 107
    bytes)."""
    d = tempfile.mkdtemp(prefix="sbpy-", dir="/tmp")
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def make_broker(tmpdir_short):
    """make_broker(args=[...]) starts a broker; all are stopped (and
    checked) at the end of the test."""
    brokers: List[Broker] = []

    def make(args: Optional[List[str]] = None, start: bool = True, **kw) -> Broker:
        sub = tempfile.mkdtemp(dir=tmpdir_short)
        os.chmod(sub, 0o755)
        b = Broker(sub, args, **kw)
        brokers.append(b)
        return b.start() if start else b

    yield make
    errors = []
    for b in brokers:
        try:
            b.stop(check=True)
        except AssertionError as e:
            errors.append(str(e))
    assert not errors, "\n".join(errors)


@pytest.fixture
def broker(make_broker) -> Broker:
    return make_broker()


@pytest.fixture
def bus(broker):
    with sockbus.connect(broker.socket, name="test") as b:
        yield b


@pytest.fixture(autouse=True)
def _no_default_endpoint(monkeypatch, tmpdir_short):
    """No test may reach a broker by the default rule by accident."""
    monkeypatch.delenv("SOCKBUS_SOCKET", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", os.path.join(tmpdir_short, "no-runtime-dir"))


TEST_TIMEOUT_S = 120


@pytest.fixture(autouse=True)
def _bounded(request):
    """No test runs longer than TEST_TIMEOUT_S: a hang fails it, with
    the stack of where it hung."""

    def expired(signum, frame):
        raise AssertionError(f"{request.node.name} took more than {TEST_TIMEOUT_S} s")

    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(TEST_TIMEOUT_S)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def run(coro, timeout: float = 60.0):
    """Run an asyncio test body, bounded."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


class Cli:
    """A `sockbus` command running in the background, stdout read
    without blocking."""

    def __init__(self, args: List[str], stdin=subprocess.DEVNULL) -> None:
        self.proc = subprocess.Popen([sockbus_path()] + args, stdin=stdin, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        os.set_blocking(self.proc.stdout.fileno(), False)
        self.out = b""

    def read(self, timeout: float = 0.0) -> bytes:
        """Whatever stdout has now (waiting up to timeout for more)."""
        r, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if r:
            chunk = self.proc.stdout.read()
            if chunk:
                self.out += chunk
        return self.out

    def wait_output(self, needle: bytes, timeout: float = IO_S) -> bytes:
        end = time.monotonic() + timeout
        while needle not in self.read(0.05):
            if time.monotonic() > end:
                raise AssertionError(f"{needle!r} not in the command's output {self.out!r} "
                                     f"(stderr: {self.proc.stderr.read()!r})")
        return self.out

    def wait(self, timeout: float = IO_S) -> int:
        code = self.proc.wait(timeout)
        self.read()
        return code

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()
        self.proc.stderr.close()


@pytest.fixture
def cli():
    """cli([...]) starts `sockbus ...` in the background; all are killed at
    the end."""
    started: List[Cli] = []

    def start(args: List[str], **kw) -> Cli:
        c = Cli(args, **kw)
        started.append(c)
        return c

    yield start
    for c in started:
        c.stop()


def run_cli(args: List[str], input: bytes = b"", timeout: float = IO_S) -> subprocess.CompletedProcess:
    return subprocess.run([sockbus_path()] + args, input=input, capture_output=True,
                          timeout=timeout)
