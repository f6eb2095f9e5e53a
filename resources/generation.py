"""Settings shared by the generation stages (S->C, C->I, I->R, AMR-Evol) as one resource,
so one edit in the UI's launchpad (or one CLI flag) changes every stage consistently."""

from dataclasses import fields

import dagster as dg

from amr_dagster.generation.config import GenerationConfig
from amr_dagster.profiles import DEFAULT_PROFILE, Profile, load_profile
from resources.env import overrides_from_env

_DEFAULTS = GenerationConfig()


class GenerationSettings(dg.ConfigurableResource):
    """``max_seeds`` > 0 caps how many deduplicated seeds of a batch enter generation (the rest
    are recorded as rejected ``over_seed_limit``); sized for the embedded CPU model.

    ``profile`` names a settings profile (``amr_dagster/prompts/profiles/``): its values for
    every stage apply first; a field here that differs from its default wins over it."""

    profile: str = DEFAULT_PROFILE
    global_seed: int = _DEFAULTS.global_seed
    max_seeds: int = 0
    n_samples: int = _DEFAULTS.n_samples
    concept_shots: int = _DEFAULTS.concept_shots
    instruction_shots: int = _DEFAULTS.instruction_shots
    response_shots: int = _DEFAULTS.response_shots
    shot_sets: int = _DEFAULTS.shot_sets
    chunk_size: int = _DEFAULTS.chunk_size
    response_max_tokens: int = _DEFAULTS.response_max_tokens
    response_temperature: float = _DEFAULTS.response_temperature
    instruction_max_tokens: int = _DEFAULTS.instruction_max_tokens
    concepts_max_tokens: int = _DEFAULTS.concepts_max_tokens

    @classmethod
    def from_env(cls) -> "GenerationSettings":
        """``AMR_<FIELD>`` overrides (e.g. ``AMR_N_SAMPLES=8``, ``AMR_MAX_SEEDS=20``)."""
        return cls(**overrides_from_env(cls.model_fields, "AMR_"))

    def settings_profile(self) -> Profile:
        """The named profile (an unknown name raises, listing the known ones)."""
        return load_profile(self.profile)

    def config(self) -> GenerationConfig:
        known = {f.name for f in fields(GenerationConfig)} - {"profile"}
        return self.settings_profile().build("generation", {k: v for k, v in self.model_dump().items() if k in known})
