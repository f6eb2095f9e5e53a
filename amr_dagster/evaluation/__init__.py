"""Evaluating a model: how strong is the generator before GPU hours go into it (HumanEval)."""
