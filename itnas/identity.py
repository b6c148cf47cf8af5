"""A run's identity: what a search or training checkpoint must match to be resumed, built and compared here only.

A checkpoint stores the identity of the run that wrote it (`itnas.engine.run_epochs`); a run resumes from it only
when the identities are equal, and a checkpoint of another identity is discarded (a stage, the `check` stage) or
refused (`itnas.checkpoint.load_checkpoint`) with `identity_diff`'s explanation of what differs.

    {"config": the resolved config (a SearchConfig, whose method and seed are in it; or a TrainConfig),
     "seed": the training seed (a training only; a search's is in its config),
     "network": the final network trained (a training: genotype, data shape; `FinalNetworkConfig`),
     "data_fingerprint": the prepared data's fingerprint,
     "data_parallel": {"world_size": processes in all, "sync_batchnorm": ...} (another count is another batch),
     "threads": intra-op threads per process on a CPU (they split float32 sums: other bits; absent on a GPU),
     "code": {repository file: hash} of the code the stage runs}

Parts not known where the identity is built are left out (the `check` stage has no data and no genotype; a library
caller without a source checkout has no code hashes); `identity_diff` compares the parts of the expected identity
only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

__all__ = ["identity_diff", "run_identity"]


def _json(value: BaseModel | Mapping[str, Any]) -> dict[str, Any]:
    return value.model_dump(mode="json") if isinstance(value, BaseModel) else dict(value)


def run_identity(config: BaseModel | Mapping[str, Any], *, seed: int | None = None,
                 network: BaseModel | Mapping[str, Any] | None = None, data_fingerprint: str | None = None,
                 world_size: int = 1, sync_batchnorm: bool = False, threads: int | None = None,
                 code: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The identity of a run (module docstring) as a JSON-ready dict.

    Args:
        config: the resolved config of the run (a search config resolved for its device: never dtype "auto").
        seed: a training's seed (None for a search: its config holds it). network: a training's final network.
        data_fingerprint: of the data the run reads (None where unknown: then not compared).
        world_size, sync_batchnorm: the data-parallel layout (`itnas.config.DistributedConfig`).
        threads: intra-op threads per process on a CPU (None on a GPU or where unknown: then not stored).
        code: {file: hash} of the code the run executes (None where unknown: then not compared).
    """
    out: dict[str, Any] = {"config": _json(config)}
    if seed is not None:
        out["seed"] = seed
    if network is not None:
        out["network"] = _json(network)
    if data_fingerprint is not None:
        out["data_fingerprint"] = data_fingerprint
    out["data_parallel"] = {"world_size": world_size, "sync_batchnorm": sync_batchnorm}
    if threads is not None:
        out["threads"] = threads
    if code is not None:
        out["code"] = dict(code)
    return out


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dict -> {"a.b.c": leaf}, so that a difference names the exact key."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def identity_diff(stored: Mapping[str, Any], expected: Mapping[str, Any], partial: bool = False) -> str | None:
    """Why a checkpoint of identity `stored` is not a run of `expected`, or None when it is one. `partial`: compare
    only the parts (top-level keys) that `expected` has (an identity built without the data or the network, as the
    `check` stage builds it); else every part of either. The explanation names the changed code files ("other code
    (itnas/search.py changed)") and the dotted keys of everything else that differs ("other params or data (keys
    differ: ['config.weight_optimizer.lr'])")."""
    if not isinstance(stored, Mapping):
        return "another run (no identity stored)"
    parts = []
    if ("code" in expected or not partial) and stored.get("code") != expected.get("code"):
        old, new = stored.get("code") or {}, expected.get("code") or {}
        changed = sorted(f for f in set(old) | set(new) if old.get(f) != new.get(f))
        shown = ", ".join(changed[:4]) + (f" and {len(changed) - 4} more" if len(changed) > 4 else "")
        parts.append(f"other code ({shown} changed)")
    compared = [k for k in dict.fromkeys([*expected, *([] if partial else stored)]) if k != "code"]
    new = _flatten({k: expected[k] for k in compared if k in expected})
    old = _flatten({k: stored[k] for k in compared if k in stored})
    keys = sorted(k for k in set(new) | set(old) if new.get(k, _MISSING) != old.get(k, _MISSING))
    if keys:
        more = f" and {len(keys) - 8} more" if len(keys) > 8 else ""
        parts.append(f"other params or data (keys differ: {keys[:8]}{more})")
    return " and ".join(parts) or None


_MISSING = object()
