"""Reading params blocks into the typed configs (`itnas.config`, `itnas.train_config`): deep merges of overrides,
the unknown keys of a block, and validation whose failure is one `ConfigError` naming every bad key, its value and
what is allowed (`parse_config`, `config_error`).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from .config import ConfigError

__all__ = ["config_error", "deep_merge", "parse_config", "problems_error", "unknown_keys"]


def deep_merge(base: dict, override: dict) -> dict:
    """`base` with `override` merged in, key by key and recursively for nested dicts (neither is modified)."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def unknown_keys(model: type[BaseModel], block: object, skip: tuple[str, ...] = ()) -> list[tuple[str, list[str]]]:
    """(dotted key, the valid keys of its level) of every key of `block` (a params dict, nested) that `model` (a
    config class) has no field for, recursively through nested config classes; `skip`: top-level fields that do not
    count as valid (e.g. method and seed, set by the run). [] for a block that is not a dict."""
    if not isinstance(block, dict):
        return []
    fields = [k for k in model.model_fields if k not in skip]
    out = []
    for key, value in block.items():
        field = model.model_fields.get(key) if key in fields else None
        if field is None:
            out.append((str(key), fields))
        elif isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            out += [(f"{key}.{sub}", valid) for sub, valid in unknown_keys(field.annotation, value)]
    return out


def _valid_keys(cls: type[BaseModel], loc: tuple) -> list[str]:
    """The valid keys at `loc` (a pydantic error location) inside `cls`."""
    model = cls
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        if field is None or not (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)):
            return []
        model = field.annotation
    return list(model.model_fields)


def parse_config(cls: type[BaseModel], data: dict | None, where: str) -> Any:
    """Validate `data` into `cls`; raise ConfigError naming `where.key`, the bad value and the valid choices."""
    try:
        return cls.model_validate(data or {})
    except ValidationError as err:
        raise config_error(err, cls, where) from None


def config_error(err: ValidationError, cls: type[BaseModel], where: str) -> ConfigError:
    """The ConfigError of a failed validation of `cls` (at dotted key `where`): one line per error naming the key,
    the bad value and what is allowed. A validator that raised a ConfigError (a rule with its own complete message,
    e.g. the cross-block rules of `itnas.params.Params`) keeps that message; alone, it is returned as it is."""
    raised = [e.get("ctx", {}).get("error") for e in err.errors()]
    if len(raised) == 1 and isinstance(raised[0], ConfigError):
        return raised[0]
    lines = []
    for e, own in zip(err.errors(), raised, strict=True):
        key = ".".join([where, *map(str, e["loc"])]) if where else ".".join(map(str, e["loc"]))
        if isinstance(own, ConfigError):
            lines += str(own).removeprefix(_HEAD).split("\n  ")
        elif e["type"] == "extra_forbidden":
            lines.append(f"{key}: unknown key; valid keys: {', '.join(_valid_keys(cls, e['loc']))}")
        else:
            msg = e["msg"].removeprefix("Value error, ")
            lines.append(f"{key}={e.get('input')!r}: {msg}" if e["loc"] else f"{key}: {msg}")
    return problems_error(lines)


_HEAD = "invalid parameters:\n  "
"""How a ConfigError of several problems starts (one problem per indented line follows)."""


def problems_error(problems: list[str]) -> ConfigError:
    """One ConfigError listing `problems` (one line each, each naming its key), as every params check reports."""
    return ConfigError(_HEAD + "\n  ".join(problems))
