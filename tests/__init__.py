"""bullproof's own tests: fast unit tests, server tests, and the mutant catalogue."""
