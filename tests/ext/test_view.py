"""``miniagents view``: the run model, the JSON and SSE endpoints (ASGI transport) and the publisher end to end."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette", reason='the view extra is not installed: pip install "miniagents[view]"')

import httpx

from miniagents import InteractionContext, Message, MiniAgents, miniagent
from miniagents.cli import main as cli_main
from miniagents.ext.view import EventError, LiveRuns, RunSource, ViewPublisher, create_app
from tests.ext.view_server import view_server
from tests.servers import free_port

BASE = "http://127.0.0.1"


def batch(run: str, *events: dict[str, Any], name: str = "demo") -> dict[str, Any]:
    return {"run": run, "name": name, "started_at": 1000.0, "events": list(events)}


def sample_runs() -> LiveRuns:
    live = LiveRuns()
    live.ingest(
        batch(
            "r1",
            {"type": "call", "id": "c1", "parent": None, "alias": "TOP", "started_at": 1.0},
            {"type": "call", "id": "c2", "parent": "c1", "alias": "CHILD", "started_at": 2.0},
            {"type": "link", "call": "c1", "direction": "input", "key": "m0"},
            {"type": "link", "call": "c2", "direction": "reply", "key": "m1"},
            {"type": "link", "call": "c1", "direction": "reply", "key": "m1"},
            {"type": "text", "key": "m0", "text": "question"},
            {"type": "text", "key": "m0", "done": True, "error": None, "class": "Message"},
            {"type": "text", "key": "m1", "text": "Hel"},
        )
    )
    return live


def client_for(source: RunSource) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(source)), base_url=BASE)


async def test_json_endpoints() -> None:
    async with client_for(sample_runs()) as client:
        runs = (await client.get("/api/runs")).json()
        assert runs == [{"id": "r1", "name": "demo", "started_at": 1000.0, "calls": 2, "running": 2}]
        run = (await client.get("/api/runs/r1")).json()
        assert [(c["id"], c["parent"], c["alias"], c["status"]) for c in run["calls"]] == [
            ("c1", None, "TOP", "running"),
            ("c2", "c1", "CHILD", "running"),
        ]
        call = (await client.get("/api/runs/r1/calls/c1")).json()
        assert call["inputs"] == [{"key": "m0", "class": "Message", "preview": "question", "done": True}]
        assert call["replies"] == [{"key": "m1", "class": "Message", "preview": "Hel", "done": False}]
        message = (await client.get("/api/runs/r1/messages/m1")).json()
        assert message == {"key": "m1", "class": "Message", "text": "Hel", "done": False, "error": None}
        for path in ("/api/runs/nope", "/api/runs/r1/calls/nope", "/api/runs/r1/messages/nope"):
            response = await client.get(path)
            assert response.status_code == 404, path
        page = await client.get("/")
        assert page.status_code == 200 and "cytoscape.min.js" in page.text
        library = await client.get("/static/cytoscape.min.js")
        assert library.status_code == 200 and len(library.content) > 100_000
        foreign = await client.get("/api/runs", headers={"host": "attacker.example"})
        assert foreign.status_code == 400  # only 127.0.0.1 / localhost host names


def post_json(client: httpx.AsyncClient, body: str | bytes, **headers: str) -> Any:
    """POST a raw JSON text (httpx's ``json=`` cannot send NaN or infinity)."""
    return client.post("/api/ingest", content=body, headers={"content-type": "application/json", **headers})


async def test_ingest_endpoint_validates() -> None:
    live = LiveRuns()
    async with client_for(live) as client:
        ok = await client.post("/api/ingest", json=batch("r", {"type": "call", "id": "c", "parent": None}))
        assert ok.json() == {"ok": True, "skipped": 0}
        bad = [
            (b"not json", "not JSON"),
            (json.dumps([1]).encode(), "must be an object"),
            (json.dumps({"run": "", "events": []}).encode(), "'run' must be"),
            (json.dumps(batch("r", {"type": "nope"})).encode(), "unknown event type 'nope'"),
            (json.dumps(batch("r", {"type": "status", "id": "c", "status": "weird"})).encode(), "unknown status"),
            (json.dumps(batch("r", {"type": "link", "call": "c", "key": "m"})).encode(), "'direction' must be"),
        ]
        for body, error in bad:
            response = await post_json(client, body)
            assert response.status_code == 400, body
            assert error in response.json()["error"], (body, response.json())
    with pytest.raises(EventError, match="'events' must be a list"):
        live.ingest({"run": "r", "events": None})


CALL = '{"type": "call", "id": "c2", "parent": null, "alias": "A", "started_at": 1.0}'


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ('{"run": "bad", "started_at": 1e999, "events": []}', "'started_at' must be a finite number or null, got inf"),
        ('{"run": "bad", "started_at": NaN, "events": []}', "'started_at' must be a finite number or null, got nan"),
        ('{"run": "bad", "started_at": "soon", "events": []}', "'started_at' must be a finite number"),
        ('{"run": "bad", "started_at": true, "events": []}', "'started_at' must be a finite number"),
        ('{"run": "bad", "name": 5, "events": []}', "'name' must be a string or null"),
        ('{"run": "r", "events": [{"type": "call", "id": "c2", "started_at": NaN}]}', "'started_at' must be a finite"),
        ('{"run": "r", "events": [{"type": "call", "id": "c2", "started_at": -Infinity}]}', "got -inf"),
        ('{"run": "r", "events": [{"type": "call", "id": 7}]}', "event 'call': 'id' must be a non-empty string"),
        ('{"run": "r", "events": [{"type": "call", "id": ""}]}', "event 'call': 'id' must be a non-empty string"),
        ('{"run": "r", "events": [{"type": "call", "id": "c2", "alias": ["A"]}]}', "'alias' must be a string"),
        ('{"run": "r", "events": [{"type": "call", "id": "c2", "parent": 1}]}', "'parent' must be a non-empty string"),
        (
            '{"run": "r", "events": [{"type": "status", "id": "c", "status": "failed", "error": {"x": 1}}]}',
            "event 'status': 'error' must be a string or null, got {'x': 1}",
        ),
        (
            '{"run": "r", "events": [{"type": "status", "id": "c", "status": "failed", "ended_at": "soon"}]}',
            "event 'status': 'ended_at' must be a finite number or null, got 'soon'",
        ),
        (
            '{"run": "r", "events": [{"type": "status", "id": "c", "status": "failed", "ended_at": 1e400}]}',
            "'ended_at' must be a finite number or null, got inf",
        ),
        ('{"run": "r", "events": [{"type": "text", "key": "m", "text": 3}]}', "'text' must be a string or null"),
        ('{"run": "r", "events": [{"type": "text", "key": "m", "done": "yes"}]}', "'done' must be true or false"),
        ('{"run": "r", "events": [{"type": "text", "key": "m", "class": 1}]}', "'class' must be a non-empty string"),
        ('{"run": "r", "events": [{"type": "text", "key": "m", "error": 1, "done": true}]}', "'error' must be a"),
        # the whole batch is refused: the valid call before the bad event is not applied either
        ('{"run": "r", "events": [' + CALL + ', {"type": "call", "id": "c3", "started_at": NaN}]}', "got nan"),
    ],
)
async def test_ingest_refuses_bad_numbers_and_types_and_nothing_breaks(body: str, error: str) -> None:
    live = LiveRuns()
    live.ingest(batch("r", {"type": "call", "id": "c", "parent": None, "alias": "A", "started_at": 1.0}))
    async with client_for(live) as client:
        response = await post_json(client, body)
        assert response.status_code == 400
        assert error in response.json()["error"]
        runs = await client.get("/api/runs")  # (a stored infinity or NaN made this a 500 for every run)
        assert runs.status_code == 200
        assert [run["id"] for run in runs.json()] == ["r"]
        run = (await client.get("/api/runs/r")).json()
        assert run["calls"] == [
            {
                "id": "c",
                "parent": None,
                "alias": "A",
                "status": "running",
                "started_at": 1.0,
                "ended_at": None,
                "error": None,
            }
        ]
        assert (await client.get("/api/runs/r/calls/c")).status_code == 200
        assert (await client.get("/api/runs/r/calls/c2")).status_code == 404


async def test_ingest_takes_only_json_from_no_other_site() -> None:
    """Against cross-site request forgery: a web page can post text or a form anywhere, but not JSON."""
    live = LiveRuns()
    body = json.dumps(batch("r", {"type": "call", "id": "c", "parent": None}))
    async with client_for(live) as client:
        for headers, status, error in [
            ({"content-type": "text/plain"}, 415, "must be application/json, got 'text/plain'"),
            ({"content-type": "application/x-www-form-urlencoded"}, 415, "must be application/json"),
            ({"content-type": "multipart/form-data; boundary=x"}, 415, "must be application/json"),
            ({}, 415, "must be application/json, got 'none'"),
            ({"content-type": "application/json", "origin": "http://evil.example"}, 403, "'http://evil.example'"),
            ({"content-type": "text/plain", "origin": "http://evil.example"}, 403, "is not allowed"),
            ({"content-type": "application/json", "origin": "null"}, 403, "is not allowed"),  # (a sandboxed page)
            ({"content-type": "application/json", "origin": "http://127.0.0.1:9999"}, 403, "is not allowed"),
            ({"content-type": "application/json", "origin": "http://localhost"}, 403, "is not allowed"),
        ]:
            response = await client.post("/api/ingest", content=body, headers=headers)
            assert (response.status_code, error in response.json()["error"]) == (status, True), headers
        assert live.list_runs() == []
        # the page's own origin, and programs (no Origin header), may publish
        own = await client.post(
            "/api/ingest", content=body, headers={"content-type": "application/json; charset=utf-8", "origin": BASE}
        )
        assert own.json() == {"ok": True, "skipped": 0}
        assert (await post_json(client, json.dumps(batch("r2")))).status_code == 200
    assert [run["id"] for run in live.list_runs()] == ["r2", "r"]


async def test_ingest_skips_events_of_unknown_calls_and_repeated_calls() -> None:
    live = sample_runs()
    async with client_for(live) as client:
        # (the call events of "lost" were in a batch the server never got)
        response = await client.post(
            "/api/ingest",
            json=batch(
                "r1",
                {"type": "status", "id": "lost", "status": "finished"},
                {"type": "link", "call": "lost", "direction": "reply", "key": "m9"},
                {"type": "call", "id": "c3", "parent": "lost", "alias": "LATE", "started_at": 3.0},
                {"type": "call", "id": "c1", "parent": None, "alias": "AGAIN", "started_at": 9.0},
                {"type": "status", "id": "c3", "status": "finished", "ended_at": 4.0},
                {"type": "link", "call": "c3", "direction": "input", "key": "m0"},
            ),
        )
        assert response.json() == {"ok": True, "skipped": 3}
        run = (await client.get("/api/runs/r1")).json()
        assert [(c["id"], c["parent"], c["alias"], c["status"]) for c in run["calls"]] == [
            ("c1", None, "TOP", "running"),  # not reset by the repeated call event
            ("c2", "c1", "CHILD", "running"),
            ("c3", "lost", "LATE", "finished"),
        ]
        top = (await client.get("/api/runs/r1/calls/c1")).json()
        assert ([m["key"] for m in top["inputs"]], [m["key"] for m in top["replies"]]) == (["m0"], ["m1"])
        late = (await client.get("/api/runs/r1/calls/c3")).json()
        assert [m["preview"] for m in late["inputs"]] == ["question"]
    assert [e["type"] + ":" + e["id"] for e in await run_events(live, "r1")] == [
        "call:c1",
        "call:c2",
        "call:c3",
        "status:c3",
    ]


async def run_events(live: LiveRuns, run_id: str) -> list[dict[str, Any]]:
    """The call events `follow_run` starts with (what a page that opens the run gets)."""
    events = live.follow_run(run_id)
    assert isinstance(events, AsyncGenerator)
    try:
        return await anext(events)
    finally:
        await events.aclose()


async def read_sse(lines: Any, count: int) -> list[dict[str, Any]]:
    events = []
    async for line in lines:
        if line.startswith("data: "):
            events.append(json.loads(line[6:]))
            if len(events) == count:
                break
    return events


async def test_sse_streams_follow_the_run_and_a_message() -> None:
    """Through a real server: the ASGI transport buffers whole responses, so it cannot show a stream."""
    with view_server(sample_runs()) as (url, _):
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:

            async def ingest(*events: dict[str, Any]) -> None:
                assert (await client.post("/api/ingest", json=batch("r1", *events))).status_code == 200

            async with client.stream("GET", "/api/runs/r1/events") as response:
                assert response.headers["content-type"].startswith("text/event-stream")
                lines = response.aiter_lines()
                (first,) = await read_sse(lines, 1)
                assert [(e["type"], e["id"]) for e in first] == [("call", "c1"), ("call", "c2")]
                await ingest({"type": "status", "id": "c2", "status": "failed", "error": "ValueError: x"})
                ((status,),) = await asyncio.wait_for(read_sse(lines, 1), 5)
                assert status == {
                    "type": "status",
                    "id": "c2",
                    "status": "failed",
                    "error": "ValueError: x",
                    "ended_at": None,
                }
            async with client.stream("GET", "/api/runs/r1/messages/m1/stream") as response:
                lines = response.aiter_lines()
                assert await read_sse(lines, 1) == [{"text": "Hel"}]
                await ingest({"type": "text", "key": "m1", "text": "lo"})
                assert await asyncio.wait_for(read_sse(lines, 1), 5) == [{"text": "lo"}]
                await ingest({"type": "text", "key": "m1", "done": True, "error": None, "class": "Reply"})
                done = await asyncio.wait_for(read_sse(lines, 1), 5)
                assert done == [{"done": True, "error": None, "class": "Reply"}]
            assert (await client.get("/api/runs/nope/events")).status_code == 404


@miniagent
async def streaming_agent(ctx: InteractionContext, delay: float = 0.0) -> None:
    async def tokens(_: dict[str, Any]) -> Any:
        for token in ["one ", "two ", "three"]:
            await asyncio.sleep(delay)
            yield token

    ctx.reply(Message.promise(start_asap=True, message_token_streamer=tokens))


@miniagent
async def broken_agent(ctx: InteractionContext) -> None:
    raise RuntimeError("broken on purpose")


@miniagent
async def root_agent(ctx: InteractionContext, delay: float = 0.0) -> None:
    ctx.reply(streaming_agent.inquire(ctx.message_promises, delay=delay))
    ctx.reply(streaming_agent.fork(alias="SECOND").inquire("x", delay=delay))
    try:
        await broken_agent.inquire()
    except RuntimeError:
        ctx.reply("recovered")


async def test_publisher_sends_the_call_tree_and_texts() -> None:
    with view_server() as (url, live):
        publisher = ViewPublisher(url=url, run_name="test run", flush_interval=0.01)
        async with MiniAgents(observers=[publisher]):
            replies = await root_agent.inquire("hello")
        assert [str(r) for r in replies] == ["one two three", "one two three", "recovered"]
        (run,) = live.list_runs()
        assert (run["id"], run["name"], run["calls"], run["running"]) == (publisher.run_id, "test run", 4, 0)
        calls = {c["alias"]: c for c in live.get_run(publisher.run_id)["calls"]}  # type: ignore[index]
        root = calls["ROOT_AGENT"]
        assert root["parent"] is None and root["status"] == "finished"
        assert {calls[a]["parent"] for a in ("STREAMING_AGENT", "SECOND", "BROKEN_AGENT")} == {root["id"]}
        assert calls["BROKEN_AGENT"]["status"] == "failed"
        assert calls["BROKEN_AGENT"]["error"] == "RuntimeError: broken on purpose"
        details = live.get_call(publisher.run_id, root["id"])
        assert details is not None
        assert [m["preview"] for m in details["inputs"]] == ["hello"]
        assert [m["preview"] for m in details["replies"]] == ["one two three", "one two three", "recovered"]
        assert all(m["done"] for m in details["replies"])
        # a forwarded message is one message, linked to both calls
        streaming = live.get_call(publisher.run_id, calls["STREAMING_AGENT"]["id"])
        assert streaming is not None and streaming["replies"][0]["key"] == details["replies"][0]["key"]
        assert publisher.sent_events > 0


async def test_publisher_without_a_server_warns_once_and_the_run_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    publisher = ViewPublisher(url=f"http://127.0.0.1:{free_port()}", flush_interval=0.01)  # nobody listens there
    with caplog.at_level(logging.WARNING, logger="miniagents.view"):
        async with MiniAgents(observers=[publisher]):
            assert len(await root_agent.inquire("x")) == 3
            await asyncio.sleep(0.05)
            assert len(await root_agent.inquire("y")) == 3
    warnings = [r for r in caplog.records if r.name == "miniagents.view"]
    assert len(warnings) == 1
    assert "not reachable" in warnings[0].getMessage() and "miniagents view" in warnings[0].getMessage()
    assert publisher.sent_events == 0 and publisher.dropped_events > 0


@miniagent
async def early_agent(ctx: InteractionContext) -> None:
    ctx.reply("early")


@miniagent
async def late_agent(ctx: InteractionContext) -> None:
    ctx.reply("late")


@miniagent
async def patient_agent(ctx: InteractionContext, gate: Any) -> None:
    await early_agent.inquire()
    await gate.wait()
    ctx.reply(late_agent.inquire())


class LogSeen(logging.Handler):
    """Sets `seen` on the first record (the publisher logs from a task of the test's event loop)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.seen.set()


async def test_a_view_server_started_during_the_run_shows_it_from_then_on(caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    publisher = ViewPublisher(url=f"http://127.0.0.1:{port}", flush_interval=0.01)  # nobody listens there yet
    gate = asyncio.Event()  # PATIENT_AGENT starts LATE_AGENT once the server runs
    first_warning = LogSeen()
    logging.getLogger("miniagents.view").addHandler(first_warning)
    try:
        with caplog.at_level(logging.WARNING, logger="miniagents.view"), contextlib.ExitStack() as server:
            async with MiniAgents(observers=[publisher]):
                replies = patient_agent.fork(gate=gate).inquire()  # (fork: an Event cannot be frozen)
                await asyncio.wait_for(first_warning.seen.wait(), 10)
                _, live = server.enter_context(view_server(port=port))
                gate.set()
                assert [str(reply) for reply in await replies] == ["late"]
            run = live.get_run(publisher.run_id)
    finally:
        logging.getLogger("miniagents.view").removeHandler(first_warning)
    assert run is not None
    calls = {call["alias"]: call for call in run["calls"]}
    # EARLY_AGENT ran while nobody listened; PATIENT_AGENT was still running when the server came (sent again)
    assert sorted(calls) == ["LATE_AGENT", "PATIENT_AGENT"]
    assert calls["LATE_AGENT"]["parent"] == calls["PATIENT_AGENT"]["id"]
    assert {call["status"] for call in calls.values()} == {"finished"}
    late = live.get_call(publisher.run_id, calls["LATE_AGENT"]["id"])
    assert late is not None and [m["preview"] for m in late["replies"]] == ["late"]
    messages = [r.getMessage() for r in caplog.records if r.name == "miniagents.view"]
    assert len(messages) == 2, messages  # one when the events start to be lost, one when they get through again
    assert "not reachable" in messages[0]
    assert "takes the events of this run again" in messages[1]
    assert publisher.dropped_events > 0 and publisher.sent_events > 0


def test_publisher_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match=r"127\.0\.0\.1 or localhost"):
        ViewPublisher(url="http://example.com:8765")
    with pytest.raises(ValueError, match="flush_interval must be positive"):
        ViewPublisher(flush_interval=0)


def test_cli_view_rejects_a_bad_port(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["view", "--port", "70000"])
    assert exit_info.value.code == 2
    assert "must be a port number" in capsys.readouterr().err


@dataclass
class TreeCall:
    """The shape of the message store's ``StoredCall`` (what `LiveRuns.add_call_tree` reads)."""

    call_id: str
    parent_call_id: str | None
    agent_alias: str
    status: str
    started_at: float = 1.0
    ended_at: float | None = 2.0
    error: str | None = None
    inputs: tuple[Message, ...] = ()
    replies: tuple[Message, ...] = ()
    children: list[TreeCall] = field(default_factory=list)


async def test_a_stored_call_tree_opens_as_a_run() -> None:
    shared = Message("shared answer")
    partial = Message("cut sho", partial=True, partial_status="streaming")
    failed = Message("broke aft", partial=True, partial_status="failed")
    tree = TreeCall(
        "root",
        None,
        "ROOT",
        "finished",
        inputs=(Message("question"),),
        replies=(shared, partial),
        children=[
            TreeCall("kid1", "root", "KID", "finished", replies=(shared,)),
            TreeCall("kid2", "root", "KID", "failed", error="ValueError: no", replies=(failed,)),
            TreeCall("kid3", "root", "SLOW", "running", ended_at=None, replies=(partial,)),
        ],
    )
    live = LiveRuns()
    assert live.add_call_tree(tree, name="stored") == "root"
    async with client_for(live) as client:
        run = (await client.get("/api/runs/root")).json()
        assert run["run"]["name"] == "stored" and run["run"]["running"] == 1
        assert [(c["id"], c["parent"], c["status"], c["error"]) for c in run["calls"]] == [
            ("root", None, "finished", None),
            ("kid1", "root", "finished", None),
            ("kid2", "root", "failed", "ValueError: no"),
            ("kid3", "root", "running", None),
        ]
        root = (await client.get("/api/runs/root/calls/root")).json()
        kid1 = (await client.get("/api/runs/root/calls/kid1")).json()
        assert kid1["replies"][0]["key"] == root["replies"][0]["key"]  # one message, two places
        # (a stored run gets nothing more: a message cut short is shown as done, with what it is)
        assert [(m["preview"], m["done"]) for m in root["replies"]] == [("shared answer", True), ("cut sho", True)]
        cut = (await client.get("/api/runs/root/messages/m2")).json()
        assert (cut["text"], cut["done"]) == ("cut sho", True)
        assert cut["error"] == "partial: it was still streaming when the store last wrote its text"
        broken = (await client.get("/api/runs/root/messages/m3")).json()
        assert (broken["text"], broken["error"]) == ("broke aft", "partial: its stream failed after this text")


@miniagent
async def sleepy_agent(ctx: InteractionContext) -> None:
    await asyncio.sleep(30)


async def test_publisher_reports_a_cancelled_call() -> None:
    with view_server() as (url, live):
        publisher = ViewPublisher(url=url, flush_interval=0.01)
        async with MiniAgents(observers=[publisher]):
            call = sleepy_agent.initiate_inquiry()
            replies = call.reply_sequence()
            await asyncio.sleep(0.05)
            call.cancel()
            with pytest.raises(BaseException):  # noqa: B017 - whatever the core raises for a cancelled call
                await asyncio.wait_for(replies, 10)
        (stored,) = live.get_run(publisher.run_id)["calls"]  # type: ignore[index]
        assert stored["status"] == "cancelled"
        assert stored["error"].startswith("AgentCallCancelledError")


def test_the_view_command_serves_on_127_0_0_1() -> None:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    process = subprocess.Popen(
        [sys.executable, "-m", "miniagents", "view", "--port", str(port)],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/api/runs", timeout=1)
                break
            except httpx.TransportError:
                assert process.poll() is None, process.stderr.read() if process.stderr else ""
                assert time.monotonic() < deadline, "miniagents view did not start"
                time.sleep(0.1)
        assert response.json() == []
        assert "cytoscape" in httpx.get(f"http://127.0.0.1:{port}/", timeout=5).text
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=20)
    assert f"http://127.0.0.1:{port}/" in stderr.decode()


async def test_a_run_recorded_in_a_store_opens_in_the_view(tmp_path: Path) -> None:
    from miniagents.ext.view import aload_stored_runs
    from miniagents.store import open_store

    @miniagent
    async def helper_agent(ctx: InteractionContext) -> None:
        ctx.reply(f"helped with {len(await ctx.message_promises)} message(s)")

    @miniagent
    async def main_agent(ctx: InteractionContext) -> None:
        ctx.reply(helper_agent.inquire(ctx.message_promises))

    location = str(tmp_path / "runs.db")
    async with MiniAgents(store=open_store(location)):
        await main_agent.inquire("question")
    live = await aload_stored_runs(location)
    async with client_for(live) as client:
        (run,) = (await client.get("/api/runs")).json()
        detail = (await client.get(f"/api/runs/{run['id']}")).json()
        assert [(call["alias"], call["status"]) for call in detail["calls"]] == [
            ("MAIN_AGENT", "finished"),
            ("HELPER_AGENT", "finished"),
        ]
        root = (await client.get(f"/api/runs/{run['id']}/calls/{run['id']}")).json()
        assert [message["preview"] for message in root["replies"]] == ["helped with 1 message(s)"]


def test_view_rejects_a_store_it_cannot_read(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert cli_main(["view", "--port", "0", "--store", str(tmp_path)]) == 2  # a directory is not a database
    assert "--store" in capsys.readouterr().err
