"""Smoke test of `benchmarks/` with tiny sizes: every workload runs both ways and checks its own result.

No timing assertions: the benchmarks themselves are run with ``python -m benchmarks`` (see benchmarks/README.md).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = str(Path(__file__).resolve().parents[1])
if ROOT not in sys.path:  # `benchmarks` is not installed with the package: import it from the repository
    sys.path.insert(0, ROOT)

from benchmarks import BenchmarkError  # noqa: E402
from benchmarks import w1_round_trips as w1  # noqa: E402
from benchmarks import w2_fan_out as w2  # noqa: E402
from benchmarks import w3_token_relay as w3  # noqa: E402
from benchmarks import w4_parallel_llm as w4  # noqa: E402
from benchmarks import w5_tool_round_trip as w5  # noqa: E402
from benchmarks import w6_cancellation as w6  # noqa: E402
from benchmarks._common import check_sequence  # noqa: E402
from benchmarks._harness import build_rows, format_table, main, parse_args  # noqa: E402


async def test_w1_round_trips() -> None:
    for run in (w1.ours, w1.plain):
        assert (await run(n=20))["us_per_call"] > 0


async def test_w2_fan_out() -> None:
    for run in (w2.ours, w2.plain):
        assert (await run(n=30))["us_per_sub_agent"] > 0


@pytest.mark.parametrize("forward", [False, True])
async def test_w3_token_relay(forward: bool) -> None:
    for run in (w3.ours_throughput, w3.plain_throughput):
        assert (await run(tokens=50, relays=3, forward=forward))["tokens_per_s"] > 0
    for run in (w3.ours_first_token, w3.plain_first_token):
        result = await run(relays=3, sleep=0.01, forward=forward)
        assert 0 <= result["emit_to_end_ms"] <= result["ttft_ms"]


async def test_w4_parallel_llm_calls() -> None:
    for run in (w4.ours, w4.plain):
        assert (await run(n=10, latency=0.005, token_interval=0.0005))["wall_ms"] > 0


async def test_w5_tool_round_trip() -> None:
    for run in (w5.ours, w5.plain, w5.ours_answer, w5.plain_answer):
        assert (await run(n=10))["us_per_round_trip"] > 0


async def test_w6_cancellation() -> None:
    for run in (w6.ours, w6.plain):
        result = await run(n=25)
        assert result["ms_to_cancel"] > 0 and result["tasks"] >= 25
    for run in (w6.ours_last_token, w6.plain_last_token):
        assert (await run(n=3))["tokens_after_cancel"] <= 1


def test_a_wrong_result_fails_loudly() -> None:
    with pytest.raises(BenchmarkError, match="item 1"):
        check_sequence(["a", "x"], ["a", "b"], "tokens")
    with pytest.raises(BenchmarkError, match="expected 2 items"):
        check_sequence(["a"], ["a", "b"], "tokens")


def test_the_command_runs_in_child_processes_and_prints_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--only", "W1", "-r", "1", "--w1-n", "20", "-q"]) == 0
    out = capsys.readouterr().out
    assert "W1 round trips, N=20" in out and "ours/asyncio" in out


def test_the_table_covers_every_target() -> None:
    args = parse_args(["--w2-n", "10,20"])
    assert args.w2_n == [10, 20] and args.repetitions == 5
    assert "| workload" in format_table(build_rows([]))


async def test_store_workload_small() -> None:
    from benchmarks import store_workload

    for with_store in (False, True):
        assert (await store_workload.echo(n=30, with_store=with_store))["seconds"] > 0
    assert (await store_workload.echo(n=30, with_store=False, noop_observer=True))["seconds"] > 0
    assert (await store_workload.write_rate(messages=200))["messages_per_s"] > 0


async def test_chat_md_turn_small() -> None:
    from benchmarks import chat_md_turn

    result = await chat_md_turn.measure(messages=50, turns=3, typing=0.05)
    assert result["messages"] == 50 and result["later_turn_median_ms"] > 0
    assert result["first_turn_after_typing_ms"] > 0  # (it checked the history it got: 52 messages)
