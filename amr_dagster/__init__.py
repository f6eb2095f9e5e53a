"""amr-dagster: execution-verified instruction-tuning data for code LLMs.

The domain core lives here as plain Python (no Dagster imports) so every stage can be run
and tested on its own; ``amr_dagster.definitions`` is the only module that touches Dagster,
assembling the thin wiring from ``assets/``, ``resources/`` and ``sensors/``.
"""

__version__ = "0.1.0"
