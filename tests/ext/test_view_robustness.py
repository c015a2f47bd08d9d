"""``miniagents view`` against bad input and a bad server: hostile bodies, broken text, a server that restarts or
does not answer, and stored runs that failed, were cancelled or crashed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette", reason='the view extra is not installed: pip install "miniagents[view]"')

import httpx

from miniagents import InteractionContext, MiniAgents, miniagent
from miniagents.cli import main as cli_main
from miniagents.ext.view import LiveRuns, ViewPublisher, aload_stored_runs, create_app
from miniagents.ext.view import _app as view_app
from miniagents.ext.view import _publisher as view_publisher
from miniagents.store import open_store
from tests.ext.view_server import view_server
from tests.servers import free_port

BASE = "http://127.0.0.1"
ROOT = Path(__file__).resolve().parents[2]


def one_call_run() -> LiveRuns:
    live = LiveRuns()
    live.ingest({"run": "r", "events": [{"type": "call", "id": "c", "parent": None, "alias": "A", "started_at": 1.0}]})
    return live


def client_for(live: LiveRuns) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(live)), base_url=BASE)


async def post(client: httpx.AsyncClient, body: bytes) -> httpx.Response:
    return await client.post("/api/ingest", content=body, headers={"content-type": "application/json"})


async def assert_run_intact(client: httpx.AsyncClient) -> None:
    runs = await client.get("/api/runs")
    assert runs.status_code == 200
    assert [(run["id"], run["calls"]) for run in runs.json()] == [("r", 1)]
    call = await client.get("/api/runs/r/calls/c")
    assert (call.status_code, call.json()["alias"]) == (200, "A")


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        (b"[" * 100_000 + b"]" * 100_000, 400, "nested too deeply"),  # (was a RecursionError: 500)
        (b'{"run": "r", "events": [' + b"[" * 50_000 + b"]" * 50_000 + b"]}", 400, "nested too deeply"),
        # (a list or an object as the status was looked up in a set: TypeError, 500)
        (b'{"run": "r", "events": [{"type": "status", "id": "c", "status": ["failed"]}]}', 400, "unknown status"),
        (b'{"run": "r", "events": [{"type": "status", "id": "c", "status": {"a": 1}}]}', 400, "unknown status"),
        (b'{"run": "r", "events": []}\xff', 400, "not JSON"),
        (b"\xed\xb3\xbf", 400, "not JSON"),  # (a surrogate encoded as UTF-8: not UTF-8)
    ],
)
async def test_hostile_bodies_get_a_400_and_the_runs_stay(body: bytes, status: int, error: str) -> None:
    async with client_for(one_call_run()) as client:
        response = await post(client, body)
        assert response.status_code == status
        assert error in response.json()["error"]
        await assert_run_intact(client)


async def test_a_body_over_the_limit_gets_a_413_and_is_not_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(view_app, "MAX_INGEST_BYTES", 1000)
    live = one_call_run()
    event = {"type": "text", "key": "m", "text": "x" * 2000}
    async with client_for(live) as client:
        response = await post(client, json.dumps({"run": "r", "events": [event]}).encode())
        assert response.status_code == 413
        assert "bigger than 1000 bytes" in response.json()["error"]
        assert live.get_message("r", "m") is None
        await assert_run_intact(client)
        small = await post(client, json.dumps({"run": "r", "events": [{**event, "text": "x" * 100}]}).encode())
        assert small.json() == {"ok": True, "skipped": 0}


async def test_a_real_server_answers_413_to_a_huge_body() -> None:
    """Through uvicorn: the body is read to its end (not kept), so that the client gets the answer."""
    huge = b'{"run": "big", "events": [], "pad": "' + b"x" * (view_app.MAX_INGEST_BYTES + 1) + b'"}'
    with view_server(one_call_run()) as (url, live):
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            response = await post(client, huge)
            assert response.status_code == 413
            assert [run["id"] for run in (await client.get("/api/runs")).json()] == ["r"]
    assert live.get_run("big") is None


async def test_lone_surrogates_are_kept_out_of_what_the_server_sends() -> None:
    """JSON can carry a lone surrogate ("\\udcff"), which UTF-8 cannot: every answer about the run was a 500."""
    live = LiveRuns()
    body = json.dumps(  # (ASCII escapes, as json.dumps writes them)
        {
            "run": "r\udcff",
            "name": "run \udcff",
            "events": [
                {"type": "call", "id": "c", "parent": None, "alias": "A\ud800", "started_at": 1.0},
                {"type": "status", "id": "c", "status": "failed", "error": "ValueError: bad \udcff byte"},
                {"type": "link", "call": "c", "direction": "reply", "key": "m"},
                {"type": "text", "key": "m", "text": "caf\udce9 \U0001f600"},
                {"type": "text", "key": "m", "done": True, "error": None, "class": "Message"},
            ],
        }
    ).encode()
    async with client_for(live) as client:
        assert (await post(client, body)).json() == {"ok": True, "skipped": 0}
        runs = await client.get("/api/runs")
        assert runs.status_code == 200
        assert [(run["id"], run["name"]) for run in runs.json()] == [("r\ufffd", "run \ufffd")]
        run = await client.get("/api/runs/r\ufffd")
        assert run.status_code == 200
        (call,) = run.json()["calls"]
        assert (call["alias"], call["error"]) == ("A\ufffd", "ValueError: bad \ufffd byte")
        message = await client.get("/api/runs/r\ufffd/messages/m")
        assert message.status_code == 200
        assert message.json()["text"] == "caf\ufffd \U0001f600"  # (a real pair stays one character)


@miniagent
async def file_name_agent(ctx: InteractionContext) -> None:
    ctx.reply(os.fsdecode(b"report-\xff.txt"))  # (a file name that is not UTF-8: "report-\udcff.txt")


async def test_a_message_with_a_lone_surrogate_does_not_stop_the_publisher() -> None:
    """httpx could not encode the batch: the publisher's task died silently and nothing more of the run came."""
    with view_server() as (url, live):
        publisher = ViewPublisher(url=url, flush_interval=0.01)
        async with MiniAgents(observers=[publisher]):
            assert [str(m) for m in await file_name_agent.inquire()] == ["report-\udcff.txt"]
            assert [str(m) for m in await file_name_agent.inquire()] == ["report-\udcff.txt"]
        run = live.get_run(publisher.run_id)
        assert run is not None
        assert [(call["alias"], call["status"]) for call in run["calls"]] == [("FILE_NAME_AGENT", "finished")] * 2
        details = live.get_call(publisher.run_id, run["calls"][1]["id"])
        assert details is not None
        assert [(m["preview"], m["done"]) for m in details["replies"]] == [("report-\ufffd.txt", True)]
        assert publisher.dropped_events == 0


@miniagent
async def quick_agent(ctx: InteractionContext) -> None:
    ctx.reply("done")


async def test_a_server_that_does_not_answer_does_not_hold_up_the_exit(caplog: pytest.LogCaptureFixture) -> None:
    """A view server stopped with Ctrl+Z takes connections but never answers: leaving the context waited 10 s."""
    connections: list[asyncio.StreamWriter] = []

    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    publisher = ViewPublisher(url=f"http://127.0.0.1:{port}", flush_interval=0.01)
    try:
        with caplog.at_level(logging.WARNING, logger="miniagents.view"):
            started = time.monotonic()
            async with MiniAgents(observers=[publisher]):
                assert [str(m) for m in await quick_agent.inquire()] == ["done"]
                ran = time.monotonic() - started
            left = time.monotonic() - started
    finally:
        server.close()
        for writer in connections:
            writer.close()
    assert ran < 1.0  # the run itself never waits for the view
    assert left < 5.0, f"leaving the context took {left:.1f} s"
    assert publisher.sent_events == 0 and publisher.dropped_events > 0
    (warning,) = [r.getMessage() for r in caplog.records if r.name == "miniagents.view"]
    assert "not reachable (ReadTimeout" in warning


@miniagent
async def waiting_child_agent(ctx: InteractionContext, gate: Any) -> None:
    await gate.wait()
    ctx.reply("child done")


@miniagent
async def waiting_parent_agent(ctx: InteractionContext, gate: Any) -> None:
    ctx.reply(await waiting_child_agent.fork(gate=gate).inquire().as_single_promise())


async def wait_until(condition: Any, what: str) -> None:
    deadline = time.monotonic() + 15
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def test_a_server_restarted_between_two_batches_gets_the_calls_still_running(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """No batch failed while the server was down (nothing happened then): the new server skipped the ends of the
    calls it never saw start, and showed nothing of the run."""
    port = free_port()
    gate = asyncio.Event()
    publisher = ViewPublisher(url=f"http://127.0.0.1:{port}", flush_interval=0.01)
    with caplog.at_level(logging.WARNING, logger="miniagents.view"):
        async with MiniAgents(observers=[publisher]):
            replies = waiting_parent_agent.fork(gate=gate).inquire()  # (fork: an Event cannot be frozen)
            with view_server(port=port) as (_, first):

                def both_calls_seen() -> bool:
                    run = first.get_run(publisher.run_id)
                    return run is not None and len(run["calls"]) == 2

                await wait_until(both_calls_seen, "the first server to get both calls")
            with view_server(port=port) as (_, second):
                gate.set()
                assert [str(reply) for reply in await replies] == ["child done"]
                await wait_until(lambda: not publisher._events and publisher._flusher is None, "the last batch")
    run = second.get_run(publisher.run_id)
    assert run is not None
    calls = {call["alias"]: call for call in run["calls"]}
    assert sorted(calls) == ["WAITING_CHILD_AGENT", "WAITING_PARENT_AGENT"]
    assert calls["WAITING_CHILD_AGENT"]["parent"] == calls["WAITING_PARENT_AGENT"]["id"]
    assert [call["status"] for call in calls.values()] == ["finished", "finished"]
    child = second.get_call(publisher.run_id, calls["WAITING_CHILD_AGENT"]["id"])
    assert child is not None and [m["preview"] for m in child["replies"]] == ["child done"]
    assert publisher.dropped_events == 0
    assert [r.getMessage() for r in caplog.records if r.name == "miniagents.view"] == []


@miniagent
async def long_text_agent(ctx: InteractionContext, size: int) -> None:
    ctx.reply("".join(chr(ord("a") + i % 26) for i in range(size)))


async def test_a_text_bigger_than_the_servers_limit_arrives_in_pieces(monkeypatch: pytest.MonkeyPatch) -> None:
    """The server takes bodies of `MAX_INGEST_BYTES` at most: the publisher splits long texts and big batches."""
    monkeypatch.setattr(view_app, "MAX_INGEST_BYTES", 64 * 1024)
    monkeypatch.setattr(view_publisher, "_MAX_POST_BYTES", 32 * 1024)
    monkeypatch.setattr(view_publisher, "_MAX_TEXT_CHARS", 8 * 1024)
    size = 300 * 1024
    with view_server() as (url, live):
        publisher = ViewPublisher(url=url, flush_interval=0.01)
        async with MiniAgents(observers=[publisher]):
            (reply,) = await long_text_agent.inquire(size=size)
        run = live.get_run(publisher.run_id)
        assert run is not None and [call["status"] for call in run["calls"]] == ["finished"]
        details = live.get_call(publisher.run_id, run["calls"][0]["id"])
        assert details is not None
        message = live.get_message(publisher.run_id, details["replies"][0]["key"])
        assert message is not None and message["done"] and message["text"] == str(reply)
        assert len(message["text"]) == size
        assert publisher.dropped_events == 0


async def test_a_store_file_that_does_not_exist_is_an_error_not_a_new_empty_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``miniagents view --store runs.bd`` (a typo) made an empty database there and showed no runs."""
    missing = tmp_path / "runs.bd"
    with pytest.raises(FileNotFoundError, match="no such store file"):
        await aload_stored_runs(str(missing))
    assert not missing.exists()
    assert await asyncio.to_thread(cli_main, ["view", "--port", "0", "--store", str(missing)]) == 2
    assert "no such store file" in capsys.readouterr().err
    assert not missing.exists()


@miniagent
async def failing_agent(ctx: InteractionContext) -> None:
    raise ValueError("<b>not bold</b> & broken")


@miniagent
async def sleeping_agent(ctx: InteractionContext) -> None:
    await asyncio.sleep(30)


@miniagent
async def mixed_agent(ctx: InteractionContext) -> None:
    with contextlib.suppress(ValueError):
        await failing_agent.inquire()
    call = sleeping_agent.initiate_inquiry()
    replies = call.reply_sequence()
    await asyncio.sleep(0.05)
    call.cancel()
    with contextlib.suppress(BaseException):
        await replies
    ctx.reply("mixed done")


CRASHING_PROGRAM = """
import asyncio, os, sys
from miniagents import InteractionContext, Message, MiniAgents, miniagent
from miniagents.store import open_store

@miniagent
async def streaming_agent(ctx: InteractionContext) -> None:
    async def tokens(_):
        yield "half an "
        await asyncio.sleep(0.5)  # (the store writes what it has meanwhile)
        os._exit(3)  # the crash
        yield "answer"
    ctx.reply(Message.promise(start_asap=True, message_token_streamer=tokens))

@miniagent
async def crashing_agent(ctx: InteractionContext) -> None:
    ctx.reply(streaming_agent.inquire("go"))
    await asyncio.sleep(30)

async def main():
    async with MiniAgents(store=open_store(sys.argv[1])):
        await crashing_agent.inquire("start")

asyncio.run(main())
"""


async def test_stored_runs_that_failed_were_cancelled_or_crashed_open_in_the_view(tmp_path: Path) -> None:
    location = str(tmp_path / "runs.db")
    async with MiniAgents(store=open_store(location)):
        assert [str(m) for m in await mixed_agent.inquire()] == ["mixed done"]
    crash = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CRASHING_PROGRAM,
        location,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdin=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(crash.communicate(), 60)
    assert crash.returncode == 3, stderr.decode()

    live = await aload_stored_runs(location)
    async with client_for(live) as client:
        crashed, mixed = (await client.get("/api/runs")).json()  # (the newest first)
        assert (crashed["calls"], crashed["running"], mixed["calls"], mixed["running"]) == (2, 2, 3, 0)
        calls = (await client.get(f"/api/runs/{mixed['id']}")).json()["calls"]
        assert [(call["alias"], call["status"]) for call in calls] == [
            ("MIXED_AGENT", "finished"),
            ("FAILING_AGENT", "failed"),
            ("SLEEPING_AGENT", "cancelled"),
        ]
        assert calls[1]["error"] == "ValueError: <b>not bold</b> & broken"
        assert calls[2]["error"].startswith("AgentCallCancelledError")
        calls = (await client.get(f"/api/runs/{crashed['id']}")).json()["calls"]
        assert [(call["alias"], call["status"], call["ended_at"]) for call in calls] == [
            ("CRASHING_AGENT", "running", None),
            ("STREAMING_AGENT", "running", None),
        ]
        streaming = (await client.get(f"/api/runs/{crashed['id']}/calls/{calls[1]['id']}")).json()
        assert [(m["preview"], m["done"]) for m in streaming["replies"]] == [("half an ", True)]  # (no more comes)
        reply = streaming["replies"][0]["key"]
        cut = (await client.get(f"/api/runs/{crashed['id']}/messages/{reply}")).json()
        assert cut["error"] == "partial: it was still streaming when the store last wrote its text"


def test_the_view_command_on_port_0_names_the_port_it_picked() -> None:
    """``--port 0`` picks a free port: the command printed ``http://127.0.0.1:0/``, which no one can open."""
    process = subprocess.Popen(
        [sys.executable, "-m", "miniagents", "view", "--port", "0"],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        assert process.stderr is not None
        line = process.stderr.readline().decode()  # (printed once the server listens)
        assert line.startswith("miniagents view: http://127.0.0.1:"), line
        url = line.split()[2]
        assert not url.endswith(":0/")
        assert httpx.get(f"{url}api/runs", timeout=10).json() == []
    finally:
        process.terminate()
        process.communicate(timeout=20)


def test_the_view_command_on_a_port_in_use_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    with contextlib.closing(socket.socket()) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert cli_main(["view", "--port", str(port)]) == 1
    assert capsys.readouterr().err == (
        f"miniagents: port {port} on 127.0.0.1 is in use by another program: choose another with --port "
        "(--port 0 takes a free one)\n"
    )


@miniagent
async def named_reply_agent(ctx: InteractionContext, text: str) -> None:
    ctx.reply(text)


async def test_a_stored_run_that_cannot_be_loaded_is_left_out_and_the_others_open(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """One broken row stopped ``miniagents view --store`` at that run: no stored run opened at all."""
    import sqlite3

    location = str(tmp_path / "runs.db")
    async with MiniAgents(store=open_store(location)):
        await named_reply_agent.inquire(text="a reply that stays readable")
        await named_reply_agent.inquire(text="a reply whose row breaks")
    with sqlite3.connect(location) as connection:
        changed = connection.execute(
            "UPDATE miniagents_messages SET json = '{broken' WHERE json LIKE '%whose row breaks%'"
        ).rowcount
    assert changed == 1
    with caplog.at_level(logging.WARNING, logger="miniagents.view"):
        live = await aload_stored_runs(location)
    async with client_for(live) as client:
        [run] = (await client.get("/api/runs")).json()
        [call] = (await client.get(f"/api/runs/{run['id']}")).json()["calls"]
        details = (await client.get(f"/api/runs/{run['id']}/calls/{call['id']}")).json()
    assert [m["preview"] for m in details["replies"]] == ["a reply that stays readable"]
    [warning] = [r.getMessage() for r in caplog.records if r.name == "miniagents.view"]
    assert "is left out" in warning and "broken JSON" in warning
