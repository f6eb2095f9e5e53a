"""Automation: the seed-arrival sensor and the backfill schedule."""
