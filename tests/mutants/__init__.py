"""The mutant catalogue: known bugs, each applied without editing `system/`.

Each module here is one seeded bug. Importing it applies it: the properties'
harness imports the module named by `BULLPROOF_MUTANT` in the test process,
and every worker process imports it too (`BULLPROOF_PRELOAD`). A module may
also define `configure(topology)` for a bug that lives in a server's
configuration, and must define `TARGETS`, the properties that should catch it.

`python -m tests.mutants` (`make mutants`) runs each mutant's targets and
prints whether the suite caught it, with which invariant, how fast, and how
short the shrunk counterexample was.
"""
