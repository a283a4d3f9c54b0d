"""How fast the containers topology starts, fails over and tears down.

Prints one figure per line as `name value unit`, measured like the local
provider's figures in `bench.topology`:
  topology.containers.start_s     start to healthy with the images already
                                  built, median of --starts
  topology.containers.failover_s  the master's container SIGKILLed to the first
                                  successful write through the Sentinel client,
                                  median of --failovers
  topology.containers.teardown_s  stop (every container removed), median
Where no Docker engine answers or the images are not built, prints why on
stderr and no figure.
"""

from __future__ import annotations

import argparse
import sys

from bench.topology import measure
from chaos.topology.containers import availability_problem


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--failovers", type=int, default=3)

    # Called from bench.topology too, whose command line holds the same options.
    args, _ = parser.parse_known_args(argv)
    if not 1 <= args.failovers <= args.starts:
        parser.error("need 1 <= --failovers <= --starts")

    problem = availability_problem()
    if problem is not None:
        print(f"topology.containers: not measured: {problem}", file=sys.stderr)
        return
    for name, value in measure("containers", args.starts, args.failovers).items():
        print(f"{name} {value:.3f} s", flush=True)


if __name__ == "__main__":
    main()
