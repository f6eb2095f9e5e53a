"""Code versions of the LLM stages include the prompt version (templates + few-shot library),
so editing a prompt marks those stages stale and the backfill schedule re-runs them."""

from amr_dagster.generation.fewshot import default_library
from amr_dagster.generation.prompting import default_templates, prompt_version

PROMPTS_VERSION = prompt_version(default_templates(), default_library())
