"""The view's web app (Starlette): the page, JSON endpoints, server-sent event streams and the ingest endpoint."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from importlib import resources
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from miniagents.ext.view._runs import EventError, LiveRuns, RunSource, UnknownRunError

__all__ = ["MAX_INGEST_BYTES", "create_app"]

_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}

MAX_INGEST_BYTES = 32 * 1024 * 1024
"""The biggest body ``POST /api/ingest`` takes (413 beyond); `ViewPublisher` sends at most a few MiB at a time."""


def _static_dir() -> str:
    return str(resources.files("miniagents.ext.view") / "static")


def create_app(source: RunSource, live: LiveRuns | None = None) -> Starlette:
    """Build the ASGI app of ``miniagents view``.

    Args:
        source: where runs are read from (a `LiveRuns`, or a source of stored runs).
        live: where ``POST /api/ingest`` puts published events; by default ``source`` if it is a `LiveRuns`,
            otherwise publishing is refused (404).

    Returns:
        A Starlette app. Routes: ``/`` (the page), ``/static/...``, ``GET /api/runs``, ``GET /api/runs/{run}``,
        ``GET /api/runs/{run}/calls/{call}``, ``GET /api/runs/{run}/messages/{key}``, the server-sent event
        streams ``GET /api/runs/{run}/events`` (call events, a JSON list per event) and
        ``GET /api/runs/{run}/messages/{key}/stream`` (a message's text as it streams), and ``POST /api/ingest``
        (a batch, see `LiveRuns.ingest`; it answers ``{"ok": true, "skipped": n}`` with the number of skipped
        events, or ``{"error": ...}`` with 400 for a malformed batch, 409 for a batch that continues a run this
        server does not have, e.g. because it restarted, or 413 for a body over `MAX_INGEST_BYTES`). Only the host
        names ``127.0.0.1`` and ``localhost`` are served (against DNS rebinding); ``POST /api/ingest`` takes only
        ``application/json`` (415 otherwise) and refuses a request whose ``Origin`` is another site's (403), so that
        no web page can publish to it.
    """
    if live is None and isinstance(source, LiveRuns):
        live = source

    async def index(request: Request) -> Response:
        return FileResponse(f"{_static_dir()}/index.html", headers={"Cache-Control": "no-cache"})

    async def runs(request: Request) -> Response:
        return JSONResponse(source.list_runs())

    async def run(request: Request) -> Response:
        return _json_or_404(source.get_run(request.path_params["run"]), "run")

    async def call(request: Request) -> Response:
        return _json_or_404(source.get_call(request.path_params["run"], request.path_params["call"]), "call")

    async def message(request: Request) -> Response:
        return _json_or_404(source.get_message(request.path_params["run"], request.path_params["key"]), "message")

    async def run_events(request: Request) -> Response:
        run_id = request.path_params["run"]
        if source.get_run(run_id) is None:
            return _not_found("run")
        return _sse(source.follow_run(run_id))

    async def message_stream(request: Request) -> Response:
        run_id, key = request.path_params["run"], request.path_params["key"]
        if source.get_message(run_id, key) is None:
            return _not_found("message")
        return _sse(source.follow_message(run_id, key))

    async def ingest(request: Request) -> Response:
        if live is None:
            return _not_found("ingest")
        refusal = _refuse_cross_site(request)
        if refusal is not None:
            return refusal
        raw = await _aread_body(request)
        if raw is None:
            return JSONResponse(
                {"error": f"the body is bigger than {MAX_INGEST_BYTES} bytes; send the events in smaller batches"},
                status_code=413,
            )
        try:
            body = json.loads(raw)
        except ValueError:
            return JSONResponse({"error": "the body is not JSON"}, status_code=400)
        except RecursionError:  # (arrays or objects nested thousands of levels deep)
            return JSONResponse({"error": "the body is nested too deeply"}, status_code=400)
        try:
            skipped = live.ingest(body)
        except UnknownRunError as error:
            return JSONResponse({"error": str(error)}, status_code=409)
        except EventError as error:
            return JSONResponse({"error": str(error)}, status_code=400)
        return JSONResponse({"ok": True, "skipped": skipped})

    routes = [
        Route("/", index),
        Route("/api/runs", runs),
        Route("/api/runs/{run}", run),
        Route("/api/runs/{run}/events", run_events),
        Route("/api/runs/{run}/calls/{call}", call),
        Route("/api/runs/{run}/messages/{key:path}/stream", message_stream),
        Route("/api/runs/{run}/messages/{key:path}", message),
        Route("/api/ingest", ingest, methods=["POST"]),
        Mount("/static", StaticFiles(directory=_static_dir()), name="static"),
    ]
    middleware = [Middleware(TrustedHostMiddleware, allowed_hosts=["127.0.0.1", "localhost"])]
    return Starlette(routes=routes, middleware=middleware)


def _refuse_cross_site(request: Request) -> Response | None:
    """The error response for a publish request that a web page of another origin could have sent, else None.

    A page can post to any address without the server's consent (no CORS preflight) only as a "simple" request:
    with a form's or a text content type. Requiring ``application/json`` rules those out, and a browser names the
    origin of the page in ``Origin``, which must then be this server's own (programs send no ``Origin``).
    """
    origin = request.headers.get("origin")
    own = f"{request.url.scheme}://{request.url.netloc}"
    if origin is not None and origin.lower() != own.lower():
        return JSONResponse({"error": f"publishing from the origin {origin!r} is not allowed"}, status_code=403)
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != "application/json":
        return JSONResponse(
            {"error": f"the content type must be application/json, got {media_type or 'none'!r}"}, status_code=415
        )
    return None


async def _aread_body(request: Request) -> bytes | None:
    """The request's body, or None if it is bigger than `MAX_INGEST_BYTES` (then read to its end, but not kept)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size <= MAX_INGEST_BYTES:
            chunks.append(chunk)
        elif chunks:
            chunks.clear()  # (the rest is read so that the client gets the answer, not a broken connection)
    return b"".join(chunks) if size <= MAX_INGEST_BYTES else None


def _not_found(what: str) -> JSONResponse:
    return JSONResponse({"error": f"no such {what}"}, status_code=404)


def _json_or_404(data: dict[str, Any] | None, what: str) -> Response:
    return _not_found(what) if data is None else JSONResponse(data)


def _sse(events: AsyncIterator[Any]) -> StreamingResponse:
    async def body() -> AsyncIterator[str]:
        yield ": connected\n\n"
        async for event in events:
            yield f"data: {json.dumps(event, ensure_ascii=False)}\n\n"

    return StreamingResponse(body(), media_type="text/event-stream", headers=_SSE_HEADERS)
