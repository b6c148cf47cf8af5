"""Checkpoints that resume exactly: atomic writes, RNG state, the resolved config stored in every file."""

from __future__ import annotations

import os
import pickle
import random
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import ItnasError, MissingOutputError
from .identity import identity_diff

__all__ = ["LOAD_ERRORS", "CheckpointError", "CheckpointMismatch", "capture_rng", "load_checkpoint", "read_torch_file",
           "restore_rng", "save_checkpoint"]

LOAD_ERRORS = (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile,
               AttributeError, ImportError)
"""What torch.load raises for a truncated, corrupted or foreign file."""


class CheckpointError(ItnasError, RuntimeError):
    """A checkpoint file that cannot be read or does not belong to the current run."""


class CheckpointMismatch(CheckpointError):
    """A readable checkpoint written by a run of another identity (config, data, code: `itnas.identity`)."""


def capture_rng() -> dict[str, Any]:
    """The state of every RNG a run draws from (torch CPU/CUDA, numpy, random)."""
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "random": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["random"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Write `payload` with torch.save to a temporary file, then rename: an interrupted write never corrupts."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def read_torch_file(path: str | Path, advice: str, label: str = "") -> Any:
    """torch.load `path` onto the CPU (full pickle: files this project wrote).

    Raises:
        CheckpointError: unreadable (truncated, corrupted, foreign); the message names the file, the error and
            `advice` (what to do about it, which depends on who owns the file).
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except LOAD_ERRORS as err:
        raise CheckpointError(f"{label}{path} is unreadable ({type(err).__name__}: {err}); {advice}") from None


def load_checkpoint(path: str | Path, config: dict | None = None) -> dict[str, Any]:
    """Load a checkpoint; with `config` (its identity: `itnas.identity.run_identity`), also check it was written by a
    run of the same identity (the message says what differs: `itnas.identity.identity_diff`).

    Raises:
        MissingOutputError (a FileNotFoundError): no file. CheckpointError: unreadable (corrupted, truncated) or
        of another config;
        the message names the file and how to start over.
    """
    path = Path(path)
    if not path.exists():
        raise MissingOutputError(f"checkpoint {path} does not exist")
    payload = read_torch_file(path, "delete it to start this run over", "checkpoint ")
    if not isinstance(payload, dict) or "config" not in payload:
        raise CheckpointError(f"checkpoint {path} is not an itnas checkpoint (no stored config)")
    if config is not None and payload["config"] != config:
        reason = identity_diff(payload["config"], config)
        raise CheckpointMismatch(f"checkpoint {path} was written by a run of {reason}; delete it to start over")
    return payload
