"""The stage spec and the one asset factory every stage goes through.

A stage module (``assets/<stage>.py``) declares what differs: a ``StageSpec`` with its name,
group, upstream assets, schema, core function, run config, pool and kinds. ``stage_asset``
does what is the same for all of them:

- calls the core function with keyword arguments chosen by its parameter names: upstream
  frames under their asset names, ``batch`` (the partition key), ``config`` (the stage's run
  config as its core dataclass), and the shared services in ``PROVIDERS`` (LLM roles, sandbox,
  data root, ...); the resources a stage needs follow from those names;
- times it, snapshots the LLM roles' usage around it, and reports flat numbers the UI plots
  (rows, accepted, rejected, yield, wall time, tokens, cache hits, pass rates), rejections by
  reason as a table, and the stage's numbers and notes;
- runs the two checks of every partitioned stage, blocking downstream steps when they fail:
  ``rows_accounted`` (accepted + rejected = rows, every rejection has a reason, every input row
  appears) and ``schema`` (the declared columns and types); a global stage reports the checks
  its core function computed.
"""

from __future__ import annotations

import inspect
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import dagster as dg
import polars as pl

from amr_dagster.accounting import Markdown, StageResult, accounting, schema_problems
from amr_dagster.outcomes import summarize
from amr_dagster.pools import stage_pool
from amr_dagster.storage.retry import StorageUnavailable
from amr_dagster.profiles import apply_profile, has_profile_section
from assets.partitions import seed_batches

OWNERS = ("team:amr-dagster",)
LLM_RETRIES = dg.RetryPolicy(max_retries=2, delay=5, backoff=dg.Backoff.EXPONENTIAL)  # the cache makes retries cheap
LLM_ROLES = ("generator", "teacher")


@dataclass(frozen=True)
class StageSpec:
    """What one stage declares; ``stage_asset(spec)`` builds its asset.

    ``run``: the core function (keyword arguments, see ``PROVIDERS``), returning a ``StageResult``.
    ``upstream``: assets whose frames it reads (passed under their names); ``deps``: assets it
    depends on without reading them as inputs. ``config``: the Dagster run-config class derived
    from the stage's core settings (``resources.derived``). ``checks``: the checks a global
    stage's core function computes (name -> description). ``kinds``: what the stage itself
    runs, for the UI; ``llm`` and ``sandbox`` are added when it takes an LLM role or a sandbox
    (which engine or backend is decided by resource config when the run starts, and recorded in
    each materialization's ``<role>/backend`` and ``sandbox/backend``).
    """

    name: str
    group: str
    description: str
    run: Callable[..., StageResult]
    schema: Mapping[str, Any] | None = None
    upstream: tuple[str, ...] = ()
    deps: tuple[str, ...] = ()
    config: type | None = None
    revision: int = 1
    prompts_version: str | None = None
    pool: str | None = None
    kinds: tuple[str, ...] = ("python", "parquet")
    partitioned: bool = True
    checks: Mapping[str, str] = field(default_factory=dict)

    @property
    def code_version(self) -> str:
        version = f"{self.name}.v{self.revision}"
        return f"{version}+prompts.{self.prompts_version}" if self.prompts_version else version

    def arguments(self) -> list[str]:
        return list(inspect.signature(self.run).parameters)

    def resource_keys(self) -> set[str]:
        keys: set[str] = set()
        for name in self.arguments():
            if name not in self.upstream:
                keys.update(PROVIDERS[name][0])
        return keys

    def all_kinds(self) -> set[str]:
        args = set(self.arguments())
        return {*self.kinds, *(["llm"] if self.llm_roles() else []), *(["sandbox"] if "sandbox" in args else [])}

    def llm_roles(self) -> list[str]:
        args = set(self.arguments())
        return [role for role in LLM_ROLES if role in args or f"make_{role}" in args]


class _Call:
    """What the providers draw on during one materialization."""

    def __init__(self, context: dg.AssetExecutionContext, config: Any) -> None:
        self.context = context
        self.resources = context.resources
        self.config = config

    def layout(self):
        return self.resources.data_root.layout()

    def stage_config(self):
        """The stage's own config, with the run's settings profile under the fields it leaves
        at their defaults (``amr_dagster.profiles``)."""
        core = self.config.to_core()
        return apply_profile(core, self.resources.generation.profile) if has_profile_section(core) else core

    def optional_engine(self, role: str):
        return getattr(self.resources, role).engine(self.layout().llm_cache_path())

    def engine(self, role: str):
        engine = self.optional_engine(role)
        if engine is None:
            raise dg.Failure(
                f"this stage needs an LLM but the {role}'s backend is 'none' (set resources.{role}.config.backend, "
                f"the CLI's --llm-backend, or AMR_{role.upper()}_BACKEND / AMR_LLM_BACKEND)",
                allow_retries=False,
            )
        return engine


def _run_settings(call: _Call) -> dict[str, Any]:
    from amr_dagster.generation.fewshot import default_library
    from amr_dagster.generation.prompting import default_templates, prompt_version

    return {
        "generator": call.resources.generator.summary(),
        "teacher": call.resources.teacher.summary(),
        "prompts_version": prompt_version(default_templates(), default_library()),
        "benchmarks": call.resources.benchmarks.names(),
    }


#: Argument name of a core stage function -> (resource keys it needs, how to build it).
PROVIDERS: dict[str, tuple[tuple[str, ...], Callable[[_Call], Any]]] = {
    "batch": ((), lambda c: c.context.partition_key),
    "config": (("generation",), lambda c: c.stage_config()),
    "data": (("data_root",), lambda c: c.layout()),
    "generation": (("generation",), lambda c: apply_profile(c.resources.generation.to_core())),
    "evolution": (("evolution", "generation"), lambda c: c.resources.evolution.to_core(global_seed=c.resources.generation.global_seed)),
    "generator": (("generator", "data_root"), lambda c: c.engine("generator")),
    "teacher": (("teacher", "data_root"), lambda c: c.engine("teacher")),
    "make_generator": (("generator", "data_root"), lambda c: lambda: c.optional_engine("generator")),
    "sandbox": (("sandbox",), lambda c: c.resources.sandbox.sandbox()),
    "limits": (("sandbox",), lambda c: c.resources.sandbox.limits()),
    "decontaminator": (("benchmarks",), lambda c: c.resources.benchmarks.decontaminator()),
    "library": (("module_library_store", "data_root"), lambda c: c.resources.module_library_store.library(c.layout())),
    "open_library": (("module_library_store",), lambda c: c.resources.module_library_store.open),
    "run_settings": (("generator", "teacher", "benchmarks"), _run_settings),
}


def stage_asset(spec: StageSpec) -> dg.AssetsDefinition:
    """The asset of one stage (see the module docstring for what it does)."""
    unknown = [a for a in spec.arguments() if a not in spec.upstream and a not in PROVIDERS]
    if unknown:
        raise TypeError(f"{spec.name}: {spec.run.__qualname__} takes {unknown}, which no upstream asset or provider supplies")
    if ("config" in spec.arguments()) != (spec.config is not None):
        raise TypeError(f"{spec.name}: a `config` argument and StageSpec.config go together")

    def compute(context: dg.AssetExecutionContext, **inputs: Any) -> Iterator[Any]:
        try:
            started = time.perf_counter()
            call = _Call(context, inputs.pop("config", None))
            roles = spec.llm_roles()
            cache = call.layout().llm_cache_path() if roles else None
            before = {role: getattr(call.resources, role).usage_snapshot(cache) for role in roles}
            arguments = {name: inputs[name] if name in spec.upstream else PROVIDERS[name][1](call) for name in spec.arguments()}
            result = spec.run(**arguments)
            usage = {role: getattr(call.resources, role).usage_since(before[role], cache) for role in roles}
            yield from _report(context, spec, result, started, usage, call)
        except StorageUnavailable as err:  # the store already spent its retry budget: fail now, say where
            raise dg.Failure(description=str(err), allow_retries=False) from err

    parameters = [inspect.Parameter("context", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=dg.AssetExecutionContext)]
    if spec.config is not None:
        parameters.append(inspect.Parameter("config", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=spec.config))
    parameters += [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=pl.DataFrame) for name in spec.upstream]
    compute.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    compute.__name__ = compute.__qualname__ = spec.name
    compute.__doc__ = spec.description

    is_llm = bool(spec.llm_roles())
    return dg.asset(
        name=spec.name,
        partitions_def=seed_batches if spec.partitioned else None,
        group_name=spec.group,
        description=spec.description,
        code_version=spec.code_version,
        deps=list(spec.deps),
        ins={name: dg.AssetIn(name) for name in spec.upstream},
        required_resource_keys=spec.resource_keys(),
        check_specs=_check_specs(spec),
        pool=spec.pool or stage_pool(spec.arguments()),  # one pool per step: amr_dagster/pools.py
        kinds=spec.all_kinds(),
        owners=list(OWNERS),
        tags={"amr/phase": spec.group, **({"amr/llm": "true"} if is_llm else {})},
        retry_policy=LLM_RETRIES if is_llm else None,
        metadata=_definition_metadata(spec),
    )(compute)


def _check_specs(spec: StageSpec) -> list[dg.AssetCheckSpec]:
    if not spec.partitioned:
        return [dg.AssetCheckSpec(name, asset=spec.name, description=text, blocking=True) for name, text in spec.checks.items()]
    return [
        dg.AssetCheckSpec("rows_accounted", asset=spec.name, blocking=True, description="accepted + rejected = input; every rejection has a reason"),
        dg.AssetCheckSpec("schema", asset=spec.name, blocking=True, description="columns and types of the stage's frame"),
    ]


def _definition_metadata(spec: StageSpec) -> dict[str, Any]:
    metadata: dict[str, Any] = {"code_references": _code_references(spec)}
    if spec.schema:
        metadata["dagster/column_schema"] = dg.TableSchema(
            columns=[dg.TableColumn(name, str(dtype() if isinstance(dtype, type) else dtype)) for name, dtype in spec.schema.items()]
        )
    return metadata


def _code_references(spec: StageSpec) -> dg.CodeReferencesMetadataValue:
    """The stage's spec module and its core function, as the UI's "open source" links."""
    import sys

    references = []
    module = sys.modules.get(_spec_module())
    with warnings.catch_warnings():  # code references are a beta API of Dagster 1.13
        warnings.filterwarnings("ignore", message=".*is currently in beta")
        return _references(spec, module, references)


def _references(spec: StageSpec, module: Any, references: list) -> dg.CodeReferencesMetadataValue:
    for obj in (module, spec.run):
        try:
            path = inspect.getsourcefile(obj)  # type: ignore[arg-type]
            line = inspect.getsourcelines(obj)[1] if obj is spec.run else 1  # type: ignore[arg-type]
        except (TypeError, OSError):
            continue
        if path:
            references.append(dg.LocalFileCodeReference(file_path=str(Path(path).resolve()), line_number=max(line, 1), label=getattr(obj, "__name__", None)))
    return dg.CodeReferencesMetadataValue(code_references=references)


def _spec_module() -> str:
    frame = inspect.currentframe()
    while frame is not None:
        name = frame.f_globals.get("__name__", "")
        if name.startswith("assets.") and name != __name__:
            return name
        frame = frame.f_back
    return __name__


def _reasons_table(by_reason: Mapping[str, int]) -> dg.MetadataValue:
    return dg.MetadataValue.table(
        records=[dg.TableRecord({"reason": reason, "rows": n}) for reason, n in by_reason.items()],
        schema=dg.TableSchema(columns=[dg.TableColumn("reason", "string"), dg.TableColumn("rows", "int")]),
    )


def _note(value: Any) -> Any:
    if isinstance(value, Markdown):
        return dg.MetadataValue.md(str(value))
    if isinstance(value, Path):
        return dg.MetadataValue.path(str(value))
    if isinstance(value, (dict, list, tuple)):
        return dg.MetadataValue.json(_jsonable(value))
    return value


def _flat_usage(usage: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """``llm/<field>`` per stage (one role per stage; ``<role>/<field>`` if ever two)."""
    flat: dict[str, Any] = {}
    for role, values in usage.items():
        prefix = "llm" if len(usage) == 1 else role
        flat.update({f"{prefix}/{k}": v for k, v in values.items()})
    return flat


def _report(context, spec: StageSpec, result: StageResult, started: float, usage, call: _Call) -> Iterator[Any]:
    metadata: dict[str, Any] = {**{k: v for k, v in result.metrics.items()}, **_flat_usage(usage)}
    for role in usage:
        metadata[f"{role}/backend"] = getattr(call.resources, role).spec().backend
    if result.stats:
        metadata["stats"] = dg.MetadataValue.json(_jsonable(result.stats))
    metadata.update({k: _note(v) for k, v in result.notes.items()})
    if "sandbox" in spec.arguments():
        metadata["sandbox/backend"] = call.resources.sandbox.backend_name()

    if result.frame is None:  # a global stage: its own files, its own checks
        if isinstance(result.notes.get("rejected_by_reason"), Mapping):
            metadata["rejected_by_reason"] = _reasons_table(result.notes["rejected_by_reason"])
        metadata["wall_s"] = round(time.perf_counter() - started, 3)
        checks = [
            dg.AssetCheckResult(check_name=name, passed=passed, metadata={k: _note(v) for k, v in details.items()})
            for name, (passed, details) in result.checks.items()
        ]
        yield dg.MaterializeResult(metadata=metadata, check_results=checks)
        return

    frame = result.frame
    counts = summarize(frame)
    ok, acct = accounting(frame, result.expected_inputs, result.input_column)
    problems = schema_problems(frame, spec.schema or {})
    input_rows = acct["input_rows"]
    metadata.update({
        "dagster/row_count": counts["rows"],
        "input_rows": input_rows if input_rows is not None else counts["rows"],
        "accepted": counts["accepted"],
        "rejected": counts["rejected"],
        "yield": round(counts["accepted"] / counts["rows"], 4) if counts["rows"] else 0.0,
        "rejected_by_reason": _reasons_table(counts["rejected_by_reason"]),
        "wall_s": round(time.perf_counter() - started, 3),
    })
    yield dg.Output(frame, metadata=metadata)
    yield dg.AssetCheckResult(check_name="rows_accounted", passed=ok, metadata={k: _note(v) for k, v in acct.items() if v is not None})
    yield dg.AssetCheckResult(check_name="schema", passed=not problems, metadata={"problems": dg.MetadataValue.json(problems)})
    if not ok:
        context.log.error(f"row accounting failed: {acct['problems']}")


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float):
        return round(value, 6)
    if value is None or isinstance(value, (str, int, bool)):
        return value
    return str(value)
