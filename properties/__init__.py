"""Hypothesis state machines over the reference system, the model and the invariants."""
