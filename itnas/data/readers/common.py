"""What the readers share: the "not found" error that lists every way to provide a data set, and file checks."""


from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..containers import DataError

__all__ = ["DOWNLOAD_WAY", "absent", "not_found", "partly"]

DOWNLOAD_WAY = "set data.download: true in params.yaml or the benchmark's data block (needs internet)"


def not_found(title: str, root: Path, ways: list[str], download: bool, fetch: Callable[[], object]) -> None:
    """Run `fetch()` (a torchvision download into `root`) when `download` is set; otherwise, or when it fails, raise
    one DataError naming `ways` (which name the folders and files looked for) and the download."""
    failed = ""
    if download:
        try:
            fetch()
            return
        except Exception as err:  # noqa: BLE001  (torchvision raises URLError, RuntimeError, OSError, ...)
            failed = f" (download failed: {type(err).__name__}: {err})"
    ways = [*ways, DOWNLOAD_WAY]
    raise DataError(f"{title} not found under {root}{failed}. Provide it in one of {len(ways)} ways:\n"
                    + ";\n".join(f"  {i}. {way}" for i, way in enumerate(ways, 1)) + ".")


def absent(folder: Path, files: tuple[str, ...]) -> list[str]:
    """The names in `files` that are not files in `folder`."""
    return [f for f in files if not (folder / f).is_file()]


def partly(folder: Path, files: tuple[str, ...]) -> str:
    """' (missing: a, b)' for the message when `folder` exists but lacks some of `files`, else ''."""
    missing = absent(folder, files)
    return f" (missing: {', '.join(missing)})" if folder.is_dir() and missing else ""

