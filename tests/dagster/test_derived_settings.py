"""Each setting is defined once, in a core dataclass; the Dagster config and resources are
derived from it (names, types, defaults, docs), and turn back into the core type."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import dagster as dg
import pytest

from resources.derived import CoreConfig, CoreResource, derive


@dataclass(frozen=True)
class Knobs:
    """Toy settings."""

    #: how many widgets
    count: int = 3
    names: tuple[str, ...] = ("a", "b")
    ratio: float = field(default=0.5, metadata={"doc": "share of widgets kept"})
    secret_seed: int = 7


def test_a_derived_config_has_the_core_fields_defaults_and_docs_and_round_trips():
    KnobsConfig = derive(Knobs, CoreConfig, exclude=("secret_seed",))
    fields = KnobsConfig.model_fields
    assert list(fields) == ["count", "names", "ratio"]
    assert fields["count"].default == 3 and fields["names"].default == ["a", "b"]
    assert fields["count"].description == "how many widgets" and fields["ratio"].description == "share of widgets kept"
    config = KnobsConfig(count=5, names=["x"])
    assert config.to_core(secret_seed=1) == Knobs(count=5, names=("x",), ratio=0.5, secret_seed=1)


def test_a_derived_config_is_run_config_of_an_asset():
    KnobsConfig = derive(Knobs, CoreConfig, name="KnobsConfig")
    seen = {}

    def widgets(config) -> None:
        seen["knobs"] = config.to_core()

    widgets.__annotations__["config"] = KnobsConfig  # a class made at run time, as the stage assets do
    widgets = dg.asset(widgets)

    run_config = {"ops": {"widgets": {"config": {"count": 9, "names": ["p", "q"]}}}}
    assert dg.materialize([widgets], run_config=run_config).success
    assert seen["knobs"] == Knobs(count=9, names=("p", "q"))


@pytest.mark.parametrize(
    "resource, core, excluded",
    [("resources.generation:GenerationSettings", "amr_dagster.generation.config:GenerationConfig", set()),
     ("resources.evolution:EvolSettings", "amr_dagster.evol.config:EvolConfig", {"global_seed"}),
     ("resources.llm:LLMResource", "amr_dagster.llm.registry:EngineSpec", set())],
)
def test_the_project_settings_resources_mirror_nothing_by_hand(resource, core, excluded):
    import importlib

    def load(path):
        module, name = path.split(":")
        return getattr(importlib.import_module(module), name)

    resource_cls, core_cls = load(resource), load(core)
    assert issubclass(resource_cls, CoreResource)
    core_fields = {f.name for f in dataclasses.fields(core_cls)} - excluded
    assert core_fields <= set(resource_cls.model_fields)
    assert set(resource_cls.model_fields) - core_fields <= {"role", "cache_path"}  # the LLM role's own two
