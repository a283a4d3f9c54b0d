"""Errors that mean the harness was misused, kept apart from findings.

A finding about the system under test is an `AssertionError` raised by an
invariant. Everything here means bullproof itself could not do its job: a bad
configuration, a missing binary, a server that would not start. Catching one of
these as a finding would blame the system for the harness's problem.
"""

from __future__ import annotations


class HarnessError(Exception):
    """bullproof could not set up or drive the topology; not a finding."""


class ConfigurationError(HarnessError):
    """A configuration value is wrong; the message says which and how to fix it."""


class MissingBinaryError(HarnessError):
    """A program the topology needs is not installed."""


class StartupError(HarnessError):
    """A server did not come up, or the topology did not become healthy in time."""


class ToxiproxyError(HarnessError):
    """The Toxiproxy server refused or failed an API call."""
