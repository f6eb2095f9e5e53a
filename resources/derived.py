"""Dagster config and resources derived from the core's settings dataclasses.

A setting is defined once, as a field of a core dataclass (``GenerationConfig``, ``EvolConfig``,
``FilterConfig``, ``DedupConfig``, ``ExportConfig``, ``EngineSpec``) with its default and a
``#:`` comment or ``field(metadata={"doc": ...})``. ``derive`` builds the Dagster class from it
(same names, types, defaults; tuples become lists, which Dagster config can hold), so a new
core field shows up in the launchpad, the run config and the CLI's ``--set`` without another
edit. ``to_core()`` turns the configured values back into the core dataclass.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import sys
import textwrap
import typing
from functools import lru_cache
from typing import Any

import dagster as dg
import pydantic

_CORE_OF: dict[type, type] = {}


def _dagster_annotation(annotation: Any) -> Any:
    """``tuple[X, ...]`` -> ``list[X]`` (Dagster config has lists, not tuples)."""
    if typing.get_origin(annotation) is tuple:
        args = [a for a in typing.get_args(annotation) if a is not Ellipsis]
        return list[args[0]] if args else list
    return annotation


def _default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        value = field.default
    elif field.default_factory is not dataclasses.MISSING:
        value = field.default_factory()
    else:
        return ...
    return list(value) if isinstance(value, tuple) else value


@lru_cache(maxsize=None)
def field_docs(core: type) -> dict[str, str]:
    """``#:`` comments above each field of a dataclass's source (Sphinx's attribute-doc form)."""
    try:
        lines = textwrap.dedent(inspect.getsource(core)).splitlines()
    except (OSError, TypeError):
        return {}
    docs: dict[str, str] = {}
    pending: list[str] = []
    for node in ast.parse("\n".join(lines)).body[0].body:  # type: ignore[attr-defined]
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            pending = []
            row = node.lineno - 2
            while row >= 0 and lines[row].strip().startswith("#:"):
                pending.insert(0, lines[row].strip()[2:].strip())
                row -= 1
            if pending:
                docs[node.target.id] = " ".join(pending)
    return docs


def derive(core: type, base: type, *, name: str | None = None, exclude: tuple[str, ...] = (), doc: str | None = None) -> type:
    """A ``base`` subclass (``dg.Config`` or ``dg.ConfigurableResource``) with ``core``'s fields."""
    hints = typing.get_type_hints(core, vars(sys.modules[core.__module__]))
    docs = field_docs(core)
    fields: dict[str, Any] = {}
    for field in dataclasses.fields(core):
        if field.name in exclude or not field.init:
            continue
        description = field.metadata.get("doc") or docs.get(field.name)
        fields[field.name] = (_dagster_annotation(hints[field.name]), pydantic.Field(default=_default(field), description=description))
    model = pydantic.create_model(  # type: ignore[call-overload]
        name or f"{core.__name__}Settings",
        __base__=base,
        __doc__=doc or (core.__doc__ or "").strip() or None,
        __module__=_caller_module(),
        **fields,
    )
    _CORE_OF[model] = core
    return model


def _caller_module() -> str:
    frame = inspect.currentframe()
    caller = frame.f_back.f_back if frame and frame.f_back else None  # type: ignore[union-attr]
    return caller.f_globals.get("__name__", __name__) if caller else __name__


def to_core(settings: pydantic.BaseModel, **extra: Any) -> Any:
    """The core dataclass of a derived model, from its values (lists back to tuples) plus ``extra``."""
    core = next(_CORE_OF[c] for c in type(settings).__mro__ if c in _CORE_OF)
    names = {f.name for f in dataclasses.fields(core) if f.init}
    values = {n: getattr(settings, n) for n in names if n in type(settings).model_fields}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return core(**{**values, **extra})


class CoreConfig(dg.Config):
    """Run config (an asset's ``config``) derived from a core settings dataclass."""

    def to_core(self, **extra: Any) -> Any:
        return to_core(self, **extra)


class CoreResource(dg.ConfigurableResource):
    """A settings resource shared by several stages, derived from a core settings dataclass."""

    def to_core(self, **extra: Any) -> Any:
        return to_core(self, **extra)
