"""The one partitioning of the pipeline: seed batches (a file or folder each, never a function)."""

import dagster as dg

seed_batches = dg.DynamicPartitionsDefinition(name="seed_batches")
