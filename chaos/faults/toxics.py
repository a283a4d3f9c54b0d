"""Degrading one link with a Toxiproxy toxic: slow, choked, cut short or reset.

Each toxic kind is its own fault, named as Toxiproxy names it:

- `latency`: delay every chunk by `latency` ms, plus or minus `jitter` ms.
- `bandwidth`: at most `rate` KB/s.
- `slow_close`: delay closing the connection by `delay` ms.
- `timeout`: drop everything, close after `timeout` ms (0: never close).
- `reset_peer`: reset the connection (TCP RST) after `timeout` ms.
- `slicer`: cut data into pieces of about `average_size` bytes (varying by
  `size_variation`), `delay` microseconds apart.
- `limit_data`: close the connection after `bytes` bytes.

`stream` picks the direction (`downstream`, towards the client; `upstream`,
towards the server; or `both`), `toxicity` the share of connections hit.
Starting adds the toxic; stopping removes it.
"""

from __future__ import annotations

import itertools
import logging
from typing import Any, ClassVar

from chaos.errors import HarnessError
from chaos.faults.base import Fault, KnownTargets, Param, check_link, resolve_link

logger = logging.getLogger(__name__)

_ids = itertools.count(1)


def _common(attributes: dict[str, Param]) -> dict[str, Param]:
    return {
        **attributes,
        "stream": Param(str, "downstream", choices=("downstream", "upstream", "both")),
        "toxicity": Param(float, 1.0, minimum=0.0, maximum=1.0),
    }


class LinkToxic(Fault):
    """A toxic of kind `kind` on one link; subclasses name the kind."""

    name = "toxic"
    kind: ClassVar[str]
    ATTRIBUTES: ClassVar[tuple[str, ...]]

    link: str | None = None
    added: tuple[tuple[str, str], ...] = ()

    @classmethod
    def check_target(cls, target: str, known: KnownTargets) -> str | None:
        return check_link(target, known)

    def attributes(self) -> dict[str, Any]:
        # Toxiproxy's attributes are integers.
        return {a: round(self.params[a]) for a in self.ATTRIBUTES}

    def _start(self) -> dict[str, Any]:
        link = resolve_link(self, self.target)
        streams = (
            ("upstream", "downstream")
            if self.params["stream"] == "both"
            else (self.params["stream"],)
        )
        serial = next(_ids)
        added: list[tuple[str, str]] = []
        try:
            for stream in streams:
                name = f"bullproof_{self.kind}_{stream}_{serial}"
                self.topology.toxiproxy.add_toxic(
                    link,
                    self.kind,
                    self.attributes(),
                    name=name,
                    stream=stream,
                    toxicity=self.params["toxicity"],
                )
                added.append((link, name))
        finally:
            self.link = link
            self.added = tuple(added)
        return {
            "links": [link],
            "observed": {"toxics": [name for _, name in added]},
        }

    def update(self, **attributes: Any) -> None:
        """Change the attributes of the active toxic in place (say, more latency)."""
        if not self.active:
            raise HarnessError(f"{self!r} is not started")
        merged = self.check_params({**self.params, **attributes})
        self.params = merged
        for link, name in self.added:
            self.topology.toxiproxy.update_toxic(link, name, self.attributes())

    def _stop(self) -> dict[str, Any]:
        errors = []
        for link, name in self.added:
            try:
                present = {t["name"] for t in self.topology.toxiproxy.toxics(link)}
                if name in present:
                    self.topology.toxiproxy.remove_toxic(link, name)
            except HarnessError as exc:
                errors.append(f"{link}/{name}: {exc}")
        if errors:
            raise HarnessError("removing toxics failed: " + "; ".join(errors))
        return {"links": [self.link] if self.link else []}


class Latency(LinkToxic):
    name = kind = "latency"
    ATTRIBUTES = ("latency", "jitter")
    PARAMS: ClassVar[dict[str, Param]] = _common(
        {
            "latency": Param(float, 100.0, minimum=0.0),
            "jitter": Param(float, 0.0, minimum=0.0),
        }
    )

    @classmethod
    def check_combination(cls, params: dict[str, Any]) -> None:
        if params["jitter"] > params["latency"]:
            raise ValueError(
                f"param 'jitter' ({params['jitter']}) must not exceed 'latency' "
                f"({params['latency']}): Toxiproxy would be asked for negative delays"
            )


class Bandwidth(LinkToxic):
    name = kind = "bandwidth"
    ATTRIBUTES = ("rate",)
    PARAMS: ClassVar[dict[str, Param]] = _common(
        {"rate": Param(float, 64.0, minimum=0.0)}
    )


class SlowClose(LinkToxic):
    name = kind = "slow_close"
    ATTRIBUTES = ("delay",)
    PARAMS: ClassVar[dict[str, Param]] = _common(
        {"delay": Param(float, 1000.0, minimum=0.0)}
    )


class Timeout(LinkToxic):
    name = kind = "timeout"
    ATTRIBUTES = ("timeout",)
    PARAMS: ClassVar[dict[str, Param]] = _common(
        {"timeout": Param(float, 0.0, minimum=0.0)}
    )


class ResetPeer(LinkToxic):
    name = kind = "reset_peer"
    ATTRIBUTES = ("timeout",)
    PARAMS: ClassVar[dict[str, Param]] = _common(
        {"timeout": Param(float, 0.0, minimum=0.0)}
    )


class Slicer(LinkToxic):
    name = kind = "slicer"
    ATTRIBUTES = ("average_size", "size_variation", "delay")
    PARAMS: ClassVar[dict[str, Param]] = _common(
        {
            "average_size": Param(float, 64.0, minimum=1.0),
            "size_variation": Param(float, 32.0, minimum=0.0),
            "delay": Param(float, 100.0, minimum=0.0),
        }
    )

    @classmethod
    def check_combination(cls, params: dict[str, Any]) -> None:
        if params["size_variation"] >= params["average_size"]:
            raise ValueError(
                "param 'size_variation' must be smaller than 'average_size'"
            )


class LimitData(LinkToxic):
    name = kind = "limit_data"
    ATTRIBUTES = ("bytes",)
    PARAMS: ClassVar[dict[str, Param]] = _common(
        {"bytes": Param(float, 1024.0, minimum=0.0)}
    )


TOXIC_FAULTS: tuple[type[LinkToxic], ...] = (
    Latency,
    Bandwidth,
    SlowClose,
    Timeout,
    ResetPeer,
    Slicer,
    LimitData,
)
