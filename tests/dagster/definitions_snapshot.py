"""A readable description of the code location: what a reviewer should see change in a diff.

``python -m tests.dagster.definitions_snapshot`` rewrites ``snapshots/definitions.json`` from the
current definitions; ``test_definitions_snapshot`` fails when they differ from it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

SNAPSHOT = Path(__file__).resolve().parent / "snapshots" / "definitions.json"


def _asset(assets_def: Any, key: Any) -> dict[str, Any]:
    spec = next(s for s in assets_def.specs if s.key == key)
    checks = sorted(
        ({"name": c.name, "blocking": c.blocking} for c in assets_def.check_specs if c.asset_key == key), key=lambda c: c["name"]
    )
    partitions = assets_def.partitions_def
    columns = spec.metadata.get("dagster/column_schema")
    policy = assets_def.op.retry_policy if assets_def.is_executable else None
    return {
        "group": spec.group_name,
        "deps": sorted(d.asset_key.to_user_string() for d in spec.deps),
        "partitions": getattr(partitions, "name", None) if partitions else None,
        "code_version": spec.code_version,
        "kinds": sorted(spec.kinds),
        "owners": list(spec.owners),
        "tags": dict(sorted((k, v) for k, v in spec.tags.items() if not k.startswith("dagster/kind/"))),
        "pool": assets_def.op.pool if assets_def.is_executable else None,
        "resources": sorted(assets_def.required_resource_keys) if assets_def.is_executable else [],
        "checks": checks,
        "retries": policy.max_retries if policy else 0,
        "columns": [c.name for c in columns.columns] if columns else None,
        "executable": assets_def.is_executable,
    }


def _resource(resource: Any) -> dict[str, Any]:
    fields = getattr(type(resource), "model_fields", {})
    return {
        "class": type(resource).__name__ if fields else getattr(resource, "__name__", type(resource).__name__),
        "config": {name: _plain(getattr(resource, name, field.default)) for name, field in sorted(fields.items())},
    }


def _plain(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool, type(None), list, dict)) else repr(value)


def describe(defs: Any) -> dict[str, Any]:
    """Assets (deps, partitions, code versions, checks, resources), jobs, sensors, schedules, resources."""
    assets: dict[str, Any] = {}
    for assets_def in defs.resolve_asset_graph().assets_defs:
        for key in assets_def.keys:
            assets[key.to_user_string()] = _asset(assets_def, key)
    job = defs.resolve_job_def("amr_pipeline")
    return {
        "assets": dict(sorted(assets.items())),
        "jobs": {
            job.name: {
                "assets": sorted(k.to_user_string() for k in job.asset_layer.executable_asset_keys),
                "executor": job.executor_def.name,
            }
        },
        "sensors": {s.name: {"job": s.job_name, "default_status": s.default_status.value} for s in defs.sensors or []},
        "schedules": {
            s.name: {"job": s.job_name, "cron": s.cron_schedule, "default_status": s.default_status.value} for s in defs.schedules or []
        },
        "resources": {key: _resource(value) for key, value in sorted((defs.resources or {}).items())},
    }


def _dump(value: Any, indent: int = 0) -> str:
    """JSON, one entry per line, but lists and small objects of scalars on one line."""
    pad, inner = "  " * indent, "  " * (indent + 1)
    flat = json.dumps(value)
    scalar = lambda v: not isinstance(v, (dict, list))  # noqa: E731
    if isinstance(value, list) and all(scalar(v) for v in value) or isinstance(value, dict) and len(flat) < 72 and all(scalar(v) for v in value.values()):
        return flat
    if isinstance(value, list):
        if all(isinstance(v, dict) and len(json.dumps(v)) < 72 for v in value):
            return "[" + ", ".join(json.dumps(v) for v in value) + "]"
        return "[\n" + ",\n".join(inner + _dump(v, indent + 1) for v in value) + "\n" + pad + "]"
    if isinstance(value, dict):
        if not value:
            return "{}"
        return "{\n" + ",\n".join(f"{inner}{json.dumps(k)}: {_dump(v, indent + 1)}" for k, v in value.items()) + "\n" + pad + "}"
    return flat


def render(defs: Any) -> str:
    return _dump(describe(defs)) + "\n"


if __name__ == "__main__":
    from amr_dagster.definitions import defs

    SNAPSHOT.write_text(render(defs))
    print(f"wrote {SNAPSHOT}", file=sys.stderr)
