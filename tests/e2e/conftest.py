"""End-to-end fixtures: the real `parlance serve` binary, driven by the
official `openai` Python SDK.

Environment (set by crates/cli/tests/openai_sdk.rs, which `cargo test
--workspace` runs):

- PARLANCE_BIN        the `parlance` binary (default: target/debug/parlance)
- PARLANCE_E2E_MODEL  the model to serve: a GGUF path or catalog name
                      (default: smollm2-135m-instruct.gguf from
                      $PARLANCE_TEST_MODELS_DIR or the data directory)

One server is started for the whole session, with a temporary --data-dir,
and killed at the end, also when tests fail.
"""

from __future__ import annotations

import collections
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import openai
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MODEL = "smollm2-135m-instruct"
STARTUP_TIMEOUT_S = 120.0
REQUEST_TIMEOUT_S = 60.0
LISTENING = re.compile(r"listening on http://[^\s:/]+:(\d+)")


def _data_dir() -> Path:
    for key in ("PARLANCE_DATA_DIR", "XDG_DATA_HOME"):
        value = os.environ.get(key)
        if value:
            return Path(value) if key == "PARLANCE_DATA_DIR" else Path(value) / "parlance"
    return Path.home() / ".local" / "share" / "parlance"


def _binary() -> str:
    path = os.environ.get("PARLANCE_BIN") or str(REPO_ROOT / "target" / "debug" / "parlance")
    if not os.access(path, os.X_OK):
        raise RuntimeError(
            f"parlance binary not found at {path!r}: build it (`cargo build -p parlance`) "
            "or set PARLANCE_BIN"
        )
    return path


def _model() -> str:
    explicit = os.environ.get("PARLANCE_E2E_MODEL")
    if explicit:
        return explicit
    candidates = []
    if os.environ.get("PARLANCE_TEST_MODELS_DIR"):
        candidates.append(Path(os.environ["PARLANCE_TEST_MODELS_DIR"]) / f"{DEFAULT_MODEL}.gguf")
    candidates.append(_data_dir() / "models" / f"{DEFAULT_MODEL}.gguf")
    for c in candidates:
        if c.is_file():
            return str(c)
    raise RuntimeError(
        f"no model to serve: set PARLANCE_E2E_MODEL, or `parlance pull {DEFAULT_MODEL}` "
        f"(looked in {', '.join(map(str, candidates))})"
    )


def _die_with_parent() -> None:
    """In the child, before exec: be killed if the pytest process dies, so a
    killed test run never leaves a server behind (Linux only; harmless elsewhere)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except Exception:
        pass


class Server:
    def __init__(self, proc: subprocess.Popen, data_dir: str):
        self.proc = proc
        self.data_dir = data_dir
        self.port: int | None = None
        self.log: collections.deque[str] = collections.deque(maxlen=300)
        self._port_found = threading.Event()
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.log.append(line)
            if os.environ.get("PARLANCE_E2E_VERBOSE"):
                print(f"[server] {line}", file=sys.stderr, flush=True)
            if self.port is None:
                m = LISTENING.search(line)
                if m:
                    self.port = int(m.group(1))
                    self._port_found.set()
        self._port_found.set()  # stderr closed: the process is gone

    def stderr_tail(self) -> str:
        return "\n".join(list(self.log)[-60:]) or "(nothing on stderr)"

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        self._port_found.wait(STARTUP_TIMEOUT_S)
        if self.port is None:
            code = self.proc.poll()
            state = f"exited with status {code}" if code is not None else "still running"
            raise RuntimeError(
                f"`parlance serve` printed no 'listening on http://127.0.0.1:PORT' line "
                f"({state}). Its stderr:\n{self.stderr_tail()}"
            )
        last_error: object = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"`parlance serve` exited with status {self.proc.returncode} before "
                    f"/health answered. Its stderr:\n{self.stderr_tail()}"
                )
            try:
                with urllib.request.urlopen(f"{self.root}/health", timeout=5) as resp:
                    if resp.status == 200:
                        return
                    last_error = f"status {resp.status}"
            except (urllib.error.URLError, OSError) as e:
                last_error = e
            time.sleep(0.1)
        raise RuntimeError(
            f"GET /health did not answer 200 within {STARTUP_TIMEOUT_S:.0f} s "
            f"(last: {last_error}). Server stderr:\n{self.stderr_tail()}"
        )

    def stop(self) -> int | None:
        """Stop the server; returns its exit status if it had already exited."""
        already = self.proc.poll()
        if already is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._reader.join(timeout=5)
        return already


@pytest.fixture(scope="session")
def server():
    binary = _binary()
    model = _model()
    with tempfile.TemporaryDirectory(prefix="parlance-e2e-") as data_dir:
        cmd = [
            binary,
            "serve",
            "--port",
            "0",
            "--model",
            model,
            "--threads",
            "2",
            "--data-dir",
            data_dir,
        ]
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
        srv = Server(proc, data_dir)
        try:
            srv.wait_ready()
            yield srv
        finally:
            exited = srv.stop()
        # Nothing the suite sends may take the server down.
        if exited is not None:
            raise AssertionError(
                f"the server died during the tests (status {exited}). Its stderr:\n"
                f"{srv.stderr_tail()}"
            )


def _make_client(srv: Server, strict: bool) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{srv.root}/v1",
        api_key="sk-test",
        max_retries=0,
        timeout=REQUEST_TIMEOUT_S,
        _strict_response_validation=strict,
    )


@pytest.fixture(scope="session")
def loose_client(server) -> openai.OpenAI:
    """The SDK as most programs use it."""
    return _make_client(server, strict=False)


@pytest.fixture(scope="session")
def strict_client(server) -> openai.OpenAI:
    """The SDK validating every response against its types."""
    return _make_client(server, strict=True)


@pytest.fixture(scope="session", params=["loose", "strict"])
def client(request, loose_client, strict_client) -> openai.OpenAI:
    """Both clients in turn: response-shape tests run under each."""
    return strict_client if request.param == "strict" else loose_client


@pytest.fixture(scope="session")
def model(loose_client) -> str:
    """The id of the first model the server lists."""
    models = loose_client.models.list().data
    assert models, "GET /v1/models listed no model"
    return models[0].id


@pytest.fixture
def serve_with():
    """Starts further `parlance serve` instances, each with its own temporary
    data directory and the extra flags given (e.g. `serve_with("--rpm", "3")`);
    every one is stopped when the test ends."""
    started: list[tuple[Server, tempfile.TemporaryDirectory]] = []

    def start(*flags: str) -> Server:
        data_dir = tempfile.TemporaryDirectory(prefix="parlance-e2e-extra-")
        cmd = [
            _binary(),
            "serve",
            "--port",
            "0",
            "--model",
            _model(),
            "--threads",
            "2",
            "--data-dir",
            data_dir.name,
            *flags,
        ]
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
        srv = Server(proc, data_dir.name)
        started.append((srv, data_dir))
        srv.wait_ready()
        return srv

    yield start
    for srv, data_dir in started:
        srv.stop()
        data_dir.cleanup()


@pytest.fixture(scope="session")
def keyed_server():
    """A server that requires keys, with one key in each of two organisations
    (`acme` and `globex`): yields the server and {org: key}."""
    with tempfile.TemporaryDirectory(prefix="parlance-e2e-keys-") as data_dir:
        keys = {}
        for org in ("acme", "globex"):
            out = subprocess.run(
                [_binary(), "--data-dir", data_dir, "keys", "create", "--org", org,
                 "--project", "main"],
                capture_output=True, text=True, timeout=120,
            )
            assert out.returncode == 0, out.stderr
            keys[org] = out.stdout.strip()
        cmd = [_binary(), "serve", "--port", "0", "--model", _model(), "--threads", "2",
               "--data-dir", data_dir]
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
        srv = Server(proc, data_dir)
        try:
            srv.wait_ready()
            yield srv, keys
        finally:
            srv.stop()
