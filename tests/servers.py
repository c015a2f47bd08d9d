"""Start and stop local LLM servers for end-to-end tests.

Two servers are supported, both bound to ``127.0.0.1`` on a free port:

* :func:`llama_server` runs llama.cpp's server through ``xllamacpp`` (OpenAI-compatible
  API) in a child process, serving the SmolLM2-135M-Instruct GGUF from the cache.
* :func:`a2o_server` runs ``a2o`` (package ``ant2oai``), an Anthropic Messages
  API to OpenAI Chat Completions proxy, in front of an OpenAI-compatible server.

Each helper is a plain context manager (no pytest dependency): it starts the
process in its own process group, polls an HTTP endpoint until the server
answers, yields the base URL and terminates the whole process group on exit.
If the process dies or does not become ready in time, ``ServerStartError`` is
raised with the tail of the server's captured output.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

HOST = "127.0.0.1"
#: Model name the llama server answers to (any name is accepted, though).
LLAMA_MODEL_ALIAS = "smollm2"


class ServerStartError(RuntimeError):
    """A server process exited early or did not become ready in time."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is currently free."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _server_env() -> dict[str, str]:
    env = dict(os.environ)
    # Never route loopback traffic through a proxy.
    no_proxy = ",".join(filter(None, [env.get("NO_PROXY", ""), "127.0.0.1", "localhost"]))
    env["NO_PROXY"] = env["no_proxy"] = no_proxy
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def _tail(log: IO[bytes], limit: int = 6000) -> str:
    log.flush()
    log.seek(0)
    data = log.read().decode("utf-8", "replace")
    return data[-limit:]


def _probe(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(200 <= resp.status < 300)
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


def _terminate(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """Terminate the process group of ``proc`` (SIGTERM, then SIGKILL)."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=grace)
    else:
        # The leader is gone; make sure no child of it lingers.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)


@contextlib.contextmanager
def _serve(
    name: str,
    make_cmd: Callable[[int], list[str]],
    *,
    ready_path: str,
    base_path: str,
    env: dict[str, str],
    startup_timeout: float,
    attempts: int = 3,
) -> Iterator[str]:
    """Run ``make_cmd(port)`` until ``ready_path`` answers; yield the base URL."""
    last_error: ServerStartError | None = None
    for _ in range(attempts):
        port = free_port()
        cmd = make_cmd(port)
        with tempfile.TemporaryFile(prefix=f"{name}-") as log:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
            try:
                deadline = time.monotonic() + startup_timeout
                ready = False
                while time.monotonic() < deadline:
                    if proc.poll() is not None:
                        break
                    if _probe(f"http://{HOST}:{port}{ready_path}"):
                        ready = True
                        break
                    time.sleep(0.1)
                if not ready:
                    code = proc.poll()
                    output = _tail(log)
                    reason = (
                        f"exited with code {code}"
                        if code is not None
                        else f"was not ready after {startup_timeout:.0f}s"
                    )
                    last_error = ServerStartError(
                        f"{name} {reason}.\ncommand: {' '.join(cmd)}\n--- output ---\n{output}"
                    )
                    if code is not None and "address already in use" in output.lower():
                        continue  # lost a race for the port: try another one
                    raise last_error
                yield f"http://{HOST}:{port}{base_path}"
                return
            finally:
                _terminate(proc)
    assert last_error is not None
    raise last_error


_LLAMA_SERVER_SCRIPT = """
import signal, sys, threading
import xllamacpp

model_path, port, n_threads, n_ctx, alias = sys.argv[1:6]
params = xllamacpp.CommonParams()
params.model.path = model_path
params.port = int(port)
params.hostnames = ["127.0.0.1"]
params.n_ctx = int(n_ctx)
params.n_parallel = 1
params.cpuparams.n_threads = params.cpuparams_batch.n_threads = int(n_threads)
params.model_alias = {alias}
params.ui = False
server = xllamacpp.Server(params)
print("listening on", server.listening_address, flush=True)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
threading.Event().wait()
"""


def llama_server_command(
    model_path: str | os.PathLike[str],
    port: int,
    *,
    n_threads: int = 1,
    n_ctx: int = 2048,
    model_alias: str = LLAMA_MODEL_ALIAS,
    python: str = sys.executable,
) -> list[str]:
    """Return the command line that runs llama.cpp's OpenAI-compatible server (``xllamacpp.Server``).

    The server uses the chat template embedded in the GGUF (ChatML for SmolLM2) and one slot: concurrent
    requests wait for each other.
    """
    return [python, "-c", _LLAMA_SERVER_SCRIPT, str(model_path), str(port), str(n_threads), str(n_ctx), model_alias]


@contextlib.contextmanager
def llama_server(
    model_path: str | os.PathLike[str] | None = None,
    *,
    n_threads: int = 1,
    n_ctx: int = 2048,
    startup_timeout: float = 120.0,
) -> Iterator[str]:
    """Run llama.cpp's server (``xllamacpp``, in a child process) for the duration of the block.

    Args:
        model_path: GGUF file to serve; defaults to the SmolLM2 file in the cache (fetched if missing).
        n_threads: Threads for generation and prompt processing.
        n_ctx: Context size in tokens.
        startup_timeout: Seconds to wait for the server to answer.

    Yields:
        The OpenAI base URL, e.g. ``http://127.0.0.1:PORT/v1`` (pass it as
        ``openai.AsyncOpenAI(base_url=...)``). Any API key and model name work.
    """
    if model_path is None:
        from miniagents.ext.llm.llama_cpp import default_model_path

        model_path = default_model_path()
    path = Path(model_path)
    with _serve(
        "llama.cpp server",
        lambda port: llama_server_command(path, port, n_threads=n_threads, n_ctx=n_ctx),
        ready_path="/health",
        base_path="/v1",
        env=_server_env(),
        startup_timeout=startup_timeout,
    ) as url:
        yield url


def a2o_command(
    upstream_base_url: str,
    port: int,
    *,
    model: str = LLAMA_MODEL_ALIAS,
    timeout: int = 300,
) -> list[str]:
    """Return the command line that runs the ``a2o`` proxy.

    ``--upstream`` must be the full chat-completions URL: a2o POSTs to it as is.
    """
    exe = shutil.which("a2o")
    prefix = [exe] if exe else [sys.executable, "-m", "a2o.cli"]
    return [
        *prefix,
        "--upstream",
        upstream_base_url.rstrip("/") + "/chat/completions",
        "--model",
        model,
        "--host",
        HOST,
        "--port",
        str(port),
        "--timeout",
        str(timeout),
    ]


@contextlib.contextmanager
def a2o_server(
    upstream_base_url: str,
    *,
    model: str = LLAMA_MODEL_ALIAS,
    startup_timeout: float = 60.0,
) -> Iterator[str]:
    """Run the ``a2o`` Anthropic→OpenAI proxy for the duration of the block.

    Args:
        upstream_base_url: OpenAI base URL ending in ``/v1`` (as yielded by
            :func:`llama_server`).
        model: Model name sent upstream, overriding whatever the client asks.
        startup_timeout: Seconds to wait for ``/health`` to answer.

    Yields:
        The Anthropic base URL, e.g. ``http://127.0.0.1:PORT`` (pass it as
        ``anthropic.AsyncAnthropic(base_url=...)``; the SDK appends
        ``/v1/messages``). Any API key works: a2o forwards only an
        ``Authorization`` header, never ``x-api-key``.
    """
    with _serve(
        "a2o",
        lambda port: a2o_command(upstream_base_url, port, model=model),
        ready_path="/health",
        base_path="",
        env=_server_env(),
        startup_timeout=startup_timeout,
    ) as url:
        yield url
