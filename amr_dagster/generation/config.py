"""Settings of the three SelfCodeAlign generation stages (one object, passed to each stage)."""

from __future__ import annotations

from dataclasses import dataclass

CATEGORY_CHOICES = ("function", "function", "class", "program")  # SelfCodeAlign's weighting
DIFFICULTY_CHOICES = ("easy", "medium", "hard")
# What the embedded 270M model can finish: measured with bench.data_yield (README, "What to
# expect"); the selfcodealign profile sets the paper's mix above.
SMALL_MODEL_CATEGORIES = ("function",)
SMALL_MODEL_DIFFICULTIES = ("easy",)


@dataclass(frozen=True)
class GenerationConfig:
    """Defaults fit the embedded Gemma 3 270M on a small CPU: easy function tasks only, easy
    few-shot examples of the task's category, 6 samples at T=0.4 with the tests written in a
    second call (``bench.data_yield`` measured these against the paper's category/difficulty
    mix and against one call of up to 384 tokens; see the README). Raise shots/samples on a
    GPU, or use the ``selfcodealign`` profile.

    ``shot_sets``: 0 draws a fresh shot set per row; K > 0 hashes rows into K shared shot sets
    so the few-shot prefix is evaluated once per set (see ``prompting``). ``chunk_size`` is how
    many requests go to the engine per call: every finished call is in the persistent cache, so
    a crash loses at most one chunk's in-flight work.
    """

    profile: str = "embedded"  # the settings profile these values came from (recorded on every row)
    global_seed: int = 0
    #: > 0 caps how many deduplicated seeds of a batch enter generation (the rest are recorded as
    #: rejected ``over_seed_limit``); 0 = no cap
    max_seeds: int = 0
    language: str = "python"
    categories: tuple[str, ...] = SMALL_MODEL_CATEGORIES
    difficulties: tuple[str, ...] = SMALL_MODEL_DIFFICULTIES
    # few-shot prompting
    concept_shots: int = 4
    instruction_shots: int = 4
    response_shots: int = 3
    shot_sets: int = 8
    chunk_size: int = 16
    #: draw few-shot examples only of these difficulties (empty = all): see ``choose_shots``
    shot_difficulties: tuple[str, ...] = SMALL_MODEL_DIFFICULTIES
    #: C->I and I->R shots all of the row's category when the library has enough (else only the last)
    same_category_shots: bool = True
    top_p: float = 0.95
    # S->C
    concepts_temperature: float = 0.0
    concepts_max_tokens: int = 48
    max_seed_chars: int = 1600
    max_concepts: int = 8
    #: completions sampled per seed (sampled at concepts_temperature > 0 only, else they are
    #: the same); the first that parses is kept
    concept_attempts: int = 1
    # C->I
    instruction_temperature: float = 0.7
    instruction_max_tokens: int = 160
    min_instruction_chars: int = 40
    max_instruction_chars: int = 1500
    instruction_paragraphs: bool = False  # keep multi-paragraph tasks (else cut at the first blank line)
    max_instruction_words: int = 200  # sanitizing: longer tasks are rejected (0 = off)
    instruction_attempts: int = 1  # completions per concepts row; the first that parses is kept
    # I->R
    #: 6, not 8: on recorded samples of 249 instructions, the first 6 of 8 gave a passing row for
    #: 51 instructions against 55 for all 8, at three quarters of the I->R time (README)
    n_samples: int = 6
    response_temperature: float = 0.4
    response_max_tokens: int = 224
    #: write the tests in a second call that continues the response (see ``responses``); False =
    #: one call for response and tests, as the reference does
    tests_call: bool = True
    tests_max_tokens: int = 80
    # tests that test: fewer assertions, or tests that never use the code, reject the sample
    min_test_assertions: int = 2
    tests_must_call_code: bool = True
    #: an instruction none of whose samples passed its own tests gets one row of a sample's code
    #: with the sibling samples' tests it passes, pooled (``sibling_tests``); False = own tests only
    sibling_tests: bool = True
    reject_incomplete_code: bool = True  # sanitizing: "TODO", "your code here", ...
    # prompts: a templates file under prompts/ and a folder of few-shot examples under prompts/
    templates_file: str = "selfcodealign.yaml"
    fewshot_dir: str = "fewshot"

    def __post_init__(self) -> None:
        if self.n_samples < 1:
            raise ValueError(f"n_samples must be >= 1, got {self.n_samples}")
        for name in ("concept_attempts", "instruction_attempts"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.concept_attempts > 1 and self.concepts_temperature == 0:
            raise ValueError("concept_attempts > 1 needs concepts_temperature > 0 (greedy attempts are all the same)")
        if self.chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {self.chunk_size}")
        if not self.categories or not self.difficulties:
            raise ValueError("categories and difficulties must not be empty")
        for name in ("categories", "difficulties", "shot_difficulties"):
            if not isinstance(getattr(self, name), tuple):
                object.__setattr__(self, name, tuple(getattr(self, name)))
