"""Settings profiles: a named set of stage configs, read from a data file, never a code path.

A profile file (``prompts/profiles/<name>.yaml``) holds a description and one section per core
config dataclass it sets: ``generation`` (``GenerationConfig``), ``filters``
(``FilterConfig``), ``export`` (``ExportConfig``). Every key must be a field of that class, so
a typo fails at load time with the file and the field named. What a profile leaves out keeps
the class's default.

Precedence when a run also sets a field (resource or run config): a value that differs from
the class default wins over the profile; a value equal to the default is taken as "not set".
The profile's name is recorded on every generated row (``profile`` column) and in the card.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping, TypeVar

import yaml

PROFILES_DIR = Path(__file__).resolve().parent / "prompts" / "profiles"
DEFAULT_PROFILE = "embedded"
SECTIONS = ("generation", "filters", "export")

T = TypeVar("T")


class UnknownProfile(ValueError):
    """The message lists the known profiles."""


def known_profiles(folder: Path = PROFILES_DIR) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.yaml"))


def _section_class(section: str) -> type:
    if section == "generation":
        from amr_dagster.generation.config import GenerationConfig

        return GenerationConfig
    if section == "filters":
        from amr_dagster.seeds.filters import FilterConfig

        return FilterConfig
    from amr_dagster.dataset.export import ExportConfig

    return ExportConfig


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    sections: Mapping[str, Mapping[str, Any]]

    def build(self, section: str, overrides: Mapping[str, Any] | None = None) -> Any:
        """The section's config object: class defaults, then the profile, then the overrides
        that differ from the class default (see the module docstring)."""
        cls = _section_class(section)
        base = cls()
        values = dict(self.sections.get(section, {}))
        for key, value in (overrides or {}).items():
            if key in {f.name for f in fields(cls)} and value != getattr(base, key):
                values[key] = value
        if section == "generation":
            values["profile"] = self.name
        return replace(base, **{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})

    def summary(self) -> dict[str, Any]:
        """What the card and metadata record: the name and every value the profile sets."""
        return {"name": self.name, **{s: dict(v) for s, v in self.sections.items()}}


def apply_profile(config: T, profile: str | None = None) -> T:
    """``config`` (a ``GenerationConfig``, ``FilterConfig`` or ``ExportConfig``) with the profile's
    values under every field it leaves at the class default. ``profile`` None: the config's own
    ``profile`` field (a ``GenerationConfig`` names its profile)."""
    section = next(s for s in SECTIONS if isinstance(config, _section_class(s)))
    name = profile or getattr(config, "profile", None) or DEFAULT_PROFILE
    return load_profile(name).build(section, asdict(config))


def has_profile_section(config: Any) -> bool:
    return any(isinstance(config, _section_class(s)) for s in SECTIONS)


@lru_cache(maxsize=8)
def load_profile(name: str = DEFAULT_PROFILE, folder: Path = PROFILES_DIR) -> Profile:
    """The profile ``name``; an unknown name raises ``UnknownProfile`` listing the known ones."""
    path = folder / f"{name}.yaml"
    if not name or "/" in name or not path.is_file():
        raise UnknownProfile(f"unknown profile {name!r}; known profiles: {', '.join(known_profiles(folder))}")
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if data.get("name") != name:
        raise ValueError(f"{path}: field 'name' must be {name!r}")
    sections: dict[str, dict[str, Any]] = {}
    for section in SECTIONS:
        values = data.get(section) or {}
        allowed = {f.name for f in fields(_section_class(section))} - {"profile"}
        unknown = sorted(set(values) - allowed)
        if unknown:
            raise ValueError(f"{path}: field '{section}.{unknown[0]}' is not a setting of that stage")
        sections[section] = values
    extra = sorted(set(data) - {"name", "description", *SECTIONS})
    if extra:
        raise ValueError(f"{path}: unknown section {extra[0]!r}; sections are {', '.join(SECTIONS)}")
    return Profile(name=name, description=str(data.get("description") or "").strip(), sections=sections)
