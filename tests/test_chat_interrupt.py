"""``miniagents chat`` as a user meets it: interrupting it before the first prompt."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(120)
def test_ctrl_c_while_a_history_database_does_not_answer_quits_without_a_traceback(tmp_path: Path) -> None:
    """The history's store is checked before the first prompt; a server that never answers keeps the check waiting."""
    pytest.importorskip("asyncpg")
    pytest.importorskip("openai")
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        server.settimeout(60)
        port = server.getsockname()[1]
        history = f"postgresql://me:s3cret@127.0.0.1:{port}/chats"
        process = subprocess.Popen(
            [sys.executable, "-m", "miniagents", "chat", "--model", "openai:x", "--history", history],
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(ROOT), "OPENAI_API_KEY": "sk-test"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            connection, _ = server.accept()  # the check connected, and waits for an answer that never comes
            with connection:
                process.send_signal(signal.SIGINT)
                out, err = process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
    assert "Traceback" not in err, err
    assert "miniagents: interrupted before the chat started\n" in err, err
    assert "s3cret" not in err
    assert out == ""
    assert process.returncode == 130
    assert list(tmp_path.iterdir()) == []
