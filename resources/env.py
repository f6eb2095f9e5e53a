"""Resource settings from ``AMR_*`` environment variables (how the CLI passes its flags)."""

import os
from typing import Any


def overrides_from_env(model_fields: dict[str, Any], prefix: str) -> dict[str, Any]:
    """``<prefix><FIELD>`` values for the fields that have one, parsed to the field's type."""
    values: dict[str, Any] = {}
    for name, field in model_fields.items():
        raw = os.environ.get(f"{prefix}{name.upper()}")
        if raw is None:
            continue
        kind = field.annotation
        values[name] = raw.strip().lower() in ("1", "true", "yes", "on") if kind is bool else kind(raw)
    return values
