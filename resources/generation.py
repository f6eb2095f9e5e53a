"""Settings shared by the generation stages (S->C, C->I, I->R, AMR-Evol) as one resource,
so one edit in the launchpad's resource config (or one CLI flag) changes every stage
consistently. The fields are ``GenerationConfig``'s: defined there, derived here."""

from amr_dagster.generation.config import GenerationConfig
from resources.derived import CoreResource, derive

GenerationSettings = derive(GenerationConfig, CoreResource, name="GenerationSettings")
