"""How fast a topology starts, fails over and tears down.

Prints one figure per line as `name value unit`:
  topology.local.start_s     cold start to healthy, median of 5
  topology.local.failover_s  master SIGKILL to the first successful write
                             through the Sentinel client, median of 3
  topology.local.teardown_s  stop, median of 5
Then the containers provider's figures, when a Docker engine answers and its
images are built.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from chaos.topology import Topology, create


def _failover_s(topo: Topology) -> float:
    async def measure() -> float:
        client = topo.redis_client()
        try:
            await client.set("bench:warm", 1)
            topo.kill(topo.current_master())
            t0 = time.monotonic()
            await client.set("bench:after", 1)
            return time.monotonic() - t0
        finally:
            await client.aclose()

    return asyncio.run(measure())


def measure(provider: str, starts: int = 5, failovers: int = 3) -> dict[str, float]:
    start, teardown, failover = [], [], []
    for i in range(starts):
        topo = create(provider)
        t0 = time.monotonic()
        topo.start()
        start.append(time.monotonic() - t0)
        try:
            if i < failovers:
                failover.append(_failover_s(topo))
        finally:
            t0 = time.monotonic()
            topo.stop()
            teardown.append(time.monotonic() - t0)
    return {
        f"topology.{provider}.start_s": statistics.median(start),
        f"topology.{provider}.failover_s": statistics.median(failover),
        f"topology.{provider}.teardown_s": statistics.median(teardown),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--failovers", type=int, default=3)
    args = parser.parse_args()
    if not 1 <= args.failovers <= args.starts:
        parser.error("need 1 <= --failovers <= --starts")

    for name, value in measure("local", args.starts, args.failovers).items():
        print(f"{name} {value:.3f} s", flush=True)

    try:
        from bench import topology_containers
    except ImportError:
        return
    topology_containers.main()


if __name__ == "__main__":
    main()
