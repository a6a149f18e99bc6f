"""The artifact store: where ``log_asset``/``log_model`` put files, and how models become files.

Files are copied to ``<root>/<experiment_id>/{assets,models}/<name>`` where ``<root>`` is
``ORBITWATCH_ARTIFACT_URI`` (a ``file://`` URI or a plain directory) or ``<data_dir>/artifacts``.
Spans only carry the resulting URI, size and SHA-256: bulk bytes never travel through the
telemetry pipeline (an OTLP request has a 4 MB ceiling, models do not).

Model objects are turned into files by type: a torch ``nn.Module`` → its ``state_dict`` with
``torch.save`` (``model.pt``); a scikit-learn estimator → ``joblib`` if importable, else pickle;
bytes → ``model.bin``; a path → the file or folder copied; anything else picklable → ``model.pkl``.
"""
from __future__ import annotations

import hashlib
import io
import os
import pickle
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import unquote, urlsplit

from orbitwatch.errors import UserError


@dataclass(frozen=True)
class StoredArtifact:
    uri: str
    size: int
    sha256: str
    files: int


def artifact_root(data_dir: Path) -> Path:
    """``ORBITWATCH_ARTIFACT_URI`` (file:// or a directory), else ``<data_dir>/artifacts``."""
    uri = os.environ.get("ORBITWATCH_ARTIFACT_URI", "").strip()
    if not uri:
        return Path(os.path.expanduser(str(data_dir))) / "artifacts"
    parts = urlsplit(uri)
    if parts.scheme == "file":
        return Path(unquote(parts.netloc + parts.path))
    if parts.scheme in ("", ) or (len(parts.scheme) == 1 and os.name == "nt"):
        return Path(uri).expanduser()
    raise UserError(f"ORBITWATCH_ARTIFACT_URI: only file:// URIs or directories are supported, got {uri!r}")


def safe_name(name: str) -> str:
    """A relative path that cannot escape its folder (no absolute paths, no '..')."""
    parts = [p for p in str(name).replace("\\", "/").split("/") if p not in ("", ".")]
    if not parts or any(p == ".." for p in parts):
        raise ValueError(f"bad artifact name {name!r}: use a relative name without '..'")
    return "/".join(parts)


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _describe(target: Path) -> StoredArtifact:
    """URI, total size and SHA-256 (of the file, or of a sorted manifest for a folder)."""
    if target.is_file():
        return StoredArtifact(target.resolve().as_uri(), target.stat().st_size, _sha256_file(target), 1)
    manifest = hashlib.sha256()
    size = files = 0
    for p in sorted(q for q in target.rglob("*") if q.is_file()):
        rel = p.relative_to(target).as_posix()
        manifest.update(f"{rel}\t{_sha256_file(p)}\n".encode())
        size += p.stat().st_size
        files += 1
    return StoredArtifact(target.resolve().as_uri(), size, manifest.hexdigest(), files)


def store_asset(data: str | os.PathLike[str] | bytes | BinaryIO, dest: Path) -> StoredArtifact:
    """Copy a file/folder, or write bytes / a binary file object, to ``dest``."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, (bytes, bytearray, memoryview)):
        dest.write_bytes(bytes(data))
    elif isinstance(data, (str, os.PathLike)):
        src = Path(data)
        if not src.exists():
            raise FileNotFoundError(f"no such file or folder: {src}")
        if src.is_dir():
            if dest.exists():
                shutil.rmtree(dest)
            shutil.copytree(src, dest)
        else:
            shutil.copyfile(src, dest)
    elif hasattr(data, "read"):
        with open(dest, "wb") as f:
            shutil.copyfileobj(data, f)  # type: ignore[arg-type]
    else:
        raise TypeError(f"log_asset takes a path, bytes or a binary file object, got {type(data).__name__}")
    return _describe(dest)


def _is_torch_module(obj: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.nn.Module)


def _is_sklearn(obj: Any) -> bool:
    return type(obj).__module__.split(".")[0] == "sklearn" or hasattr(obj, "get_params") and hasattr(obj, "fit")


def store_model(obj: Any, folder: Path) -> StoredArtifact:
    """Turn ``obj`` into file(s) under ``folder`` (see the module docstring) and describe them."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    if isinstance(obj, (str, os.PathLike)):
        src = Path(obj)
        if not src.exists():
            raise FileNotFoundError(f"no such model file or folder: {src}")
        target = folder / src.name
        if src.is_dir():
            shutil.copytree(src, target)
            return _describe(folder)
        shutil.copyfile(src, target)
        return _describe(target)
    if isinstance(obj, (bytes, bytearray, memoryview)):
        target = folder / "model.bin"
        target.write_bytes(bytes(obj))
        return _describe(target)
    if _is_torch_module(obj):
        import torch
        target = folder / "model.pt"
        torch.save(obj.state_dict(), target)
        return _describe(target)
    if _is_sklearn(obj):
        try:
            import joblib
        except ImportError:
            joblib = None  # type: ignore[assignment]
        if joblib is not None:
            target = folder / "model.joblib"
            joblib.dump(obj, target)
            return _describe(target)
    target = folder / "model.pkl"
    buf = io.BytesIO()
    try:
        pickle.dump(obj, buf, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:  # noqa: BLE001 - say what could not be saved and why
        shutil.rmtree(folder, ignore_errors=True)
        raise TypeError(f"cannot save model of type {type(obj).__qualname__}: not picklable ({exc}); "
                        f"pass a file or folder path instead") from exc
    target.write_bytes(buf.getvalue())
    return _describe(target)
