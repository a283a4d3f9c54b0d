"""Where the system under test runs: one interface, several providers.

`create("local")` gives child processes on this machine; later providers give
the same `Topology` object built another way.
"""

from __future__ import annotations

from chaos.errors import ConfigurationError
from chaos.topology.base import (
    REDIS_NODES,
    SENTINEL_NODES,
    Address,
    Link,
    Node,
    Topology,
    TopologyOptions,
)

PROVIDERS = ("local", "containers")


def create(provider: str = "local", options: TopologyOptions | None = None) -> Topology:
    """A new, not yet started topology of the named provider."""
    if provider == "local":
        from chaos.topology.local import LocalTopology

        return LocalTopology(options)
    if provider == "containers":
        from chaos.topology.containers import ContainersTopology

        return ContainersTopology(options)
    raise ConfigurationError(
        f"unknown topology provider {provider!r}; choose one of {', '.join(PROVIDERS)}"
    )


__all__ = [
    "PROVIDERS",
    "REDIS_NODES",
    "SENTINEL_NODES",
    "Address",
    "Link",
    "Node",
    "Topology",
    "TopologyOptions",
    "create",
]
