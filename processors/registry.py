"""Which processors a runner drives: ``build_processors(settings, storage, only)``.

Each processor lives in its own module under ``orbitwatch.processors`` and exposes
``build(settings, storage) -> Processor``. Modules are listed here in data-flow order (sink
feeds drift and evals, which feed alerts). A module that is not written yet is skipped; any
other import error (a bug, a missing dependency of an existing module) is raised, because a
worker that silently runs fewer processors than asked loses data without telling anyone.
"""
from __future__ import annotations

import importlib
from typing import Any

from orbitwatch.processors.base import Processor

# short name (``--only``) -> module exposing ``build(settings, storage) -> Processor``
MODULES: dict[str, str] = {
    "sink": "orbitwatch.processors.sink",
    "drift": "orbitwatch.processors.drift",
    "evals": "orbitwatch.processors.evals",
    "alerts": "orbitwatch.processors.alerts",
}


class UnknownProcessorError(ValueError):
    """``only`` names a processor that does not exist (or whose module is not written yet)."""


def available() -> list[str]:
    """Short names of the processors whose module can be imported, in data-flow order."""
    return [name for name in MODULES if _import(name) is not None]


def _import(name: str) -> Any | None:
    module = MODULES[name]
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        # Only "this very module does not exist" means "not written yet"; a missing
        # dependency *inside* the module is a real error and must surface.
        if exc.name == module:
            return None
        raise


def build_processors(settings: Any, storage: Any, only: set[str] | None = None) -> list[Processor]:
    """Build the processors (all available ones, or those named in ``only``), in data-flow order.

    Raises :class:`UnknownProcessorError` when ``only`` names something unknown or unavailable.
    """
    if only is not None:
        unknown = sorted(set(only) - set(MODULES))
        if unknown:
            raise UnknownProcessorError(
                f"unknown processor(s) {', '.join(unknown)}; known: {', '.join(MODULES)}")
    built: list[Processor] = []
    for name in MODULES:
        if only is not None and name not in only:
            continue
        mod = _import(name)
        if mod is None:
            if only is not None:
                raise UnknownProcessorError(f"processor {name!r} is not available (module {MODULES[name]} missing)")
            continue
        proc = mod.build(settings, storage)
        if not isinstance(proc, Processor):
            raise TypeError(f"{MODULES[name]}.build() returned {type(proc).__name__}, not a Processor")
        built.append(proc)
    return built
