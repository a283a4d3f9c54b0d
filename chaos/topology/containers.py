"""The `containers` provider: every node a Docker container on the host network.

Runs the same topology as `local` from the images in `docker/` (built by
`make images`, or `docker/build-images.sh`), started with testcontainers'
`DockerContainer`. Host networking only: every server listens on 127.0.0.1, as
its configuration file says, and no Docker network is created. The run
directory is bind-mounted into every container at the same path, so the
configuration files the base class writes work unchanged, and a killed node
restarts from the same files (configuration, AOF, RDB, data directory).

Killing a node SIGKILLs its container and removes it; restarting creates a new
one on the same files. Pausing freezes the container (`docker pause`).

Ryuk, testcontainers' own reaper, runs from an image of its own that only a
registry gives; where that image is not present, Ryuk is turned off and
bullproof removes its own containers. Each carries the labels `bullproof.run`,
`bullproof.node` and its owner's pid, start time and host. `stop()` removes a
run's containers; an exit hook removes those of topologies the process never
stopped; and the next start removes the containers whose owner process is gone
(a process killed with SIGKILL runs no hook).

The engine must run on this machine (its local socket, or a DOCKER_HOST of
`unix://`): bind mounts and host networking mean nothing on a remote one.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import logging
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from testcontainers.core.config import testcontainers_config
from testcontainers.core.container import DockerContainer

from chaos.errors import ConfigurationError, HarnessError, StartupError
from chaos.topology.base import Node, Topology, TopologyOptions, cache_dir

logger = logging.getLogger(__name__)

# The docker SDK, loaded by name: to mypy and ruff, the repository's own
# docker/ directory (Dockerfiles, no Python) shadows the package's name.
docker: Any = importlib.import_module("docker")
importlib.import_module("docker.errors")

IMAGES: dict[str, str] = {
    "redis": os.environ.get("BULLPROOF_IMAGE_REDIS", "bullproof/redis:latest"),
    "postgres": os.environ.get("BULLPROOF_IMAGE_POSTGRES", "bullproof/postgres:latest"),
    "toxiproxy": os.environ.get(
        "BULLPROOF_IMAGE_TOXIPROXY", "bullproof/toxiproxy:latest"
    ),
}

LABEL_RUN = "bullproof.run"
LABEL_NODE = "bullproof.node"
LABEL_OWNER_PID = "bullproof.owner.pid"
LABEL_OWNER_START = "bullproof.owner.start"
LABEL_OWNER_HOST = "bullproof.owner.host"

ENGINE_FIX = "start one with `docker/engine.sh start`"
IMAGES_FIX = "build them with `make images` (docker/build-images.sh)"


class DockerEngineError(HarnessError):
    """No Docker engine answers, so no container can be started."""


class MissingImageError(HarnessError):
    """An image the containers provider runs has not been built."""


# -- the engine and the images ---------------------------------------------------


def engine(timeout: float = 10.0) -> Any:
    """A docker SDK client of an engine that answered a ping."""
    _probe_unix_socket()
    client = None
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except docker.errors.DockerException as exc:
        if client is not None:
            client.close()
        raise DockerEngineError(
            f"no Docker engine answers ({_first_line(exc)}); {ENGINE_FIX}"
        ) from exc
    return client


def _probe_unix_socket() -> None:
    # The SDK leaks its socket when the engine's socket refuses a connection,
    # so a local engine is probed here first.
    host = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    if not host.startswith("unix://"):
        return
    path = host.removeprefix("unix://")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(5.0)
        try:
            probe.connect(path)
        except OSError as exc:
            raise DockerEngineError(
                f"no Docker engine answers at {path} ({exc.strerror or exc}); "
                f"{ENGINE_FIX}"
            ) from exc


def missing_images(client: Any, images: dict[str, str] | None = None) -> list[str]:
    """The images of `images` (default: `IMAGES`) that the engine does not have."""
    missing = []
    for image in sorted(set((images or IMAGES).values())):
        try:
            client.images.get(image)
        except docker.errors.ImageNotFound:
            missing.append(image)
    return missing


def availability_problem() -> str | None:
    """Why the containers provider cannot run here, in one line; None if it can."""
    try:
        client = engine(timeout=5.0)
    except DockerEngineError as exc:
        return str(exc)
    try:
        missing = missing_images(client)
    finally:
        client.close()
    if missing:
        return f"images not built: {', '.join(missing)}; {IMAGES_FIX}"
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# -- who owns a container ---------------------------------------------------------


def _process_start(pid: int) -> str:
    """The kernel's start time of process `pid` ("" if it is gone), which tells a
    live owner from a new process that was given the same pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""

    # The command name in parentheses may hold spaces; fields follow the ')'.
    return stat.rsplit(")", 1)[1].split()[19]


def _owner_labels() -> dict[str, str]:
    pid = os.getpid()
    return {
        LABEL_OWNER_PID: str(pid),
        LABEL_OWNER_START: _process_start(pid),
        LABEL_OWNER_HOST: socket.gethostname(),
    }


def _owner_alive(labels: dict[str, str]) -> bool:
    if labels.get(LABEL_OWNER_HOST) != socket.gethostname():
        # An engine shared with another machine: not ours to judge.
        return True
    try:
        pid = int(labels.get(LABEL_OWNER_PID, ""))
    except ValueError:
        return False
    start = _process_start(pid)
    return bool(start) and start == labels.get(LABEL_OWNER_START)


def reap_orphans(client: Any) -> list[str]:
    """Remove the bullproof containers whose owner process is gone; their names."""
    removed = []
    for container in client.containers.list(all=True, filters={"label": LABEL_RUN}):
        if _owner_alive(container.labels):
            continue
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True)
            removed.append(container.name)
    if removed:
        logger.info("removed %d orphaned containers: %s", len(removed), removed)
    return removed


def remove_containers(client: Any, label: str) -> list[str]:
    """Remove every container that carries `label` (`key` or `key=value`)."""
    removed = []
    for container in client.containers.list(all=True, filters={"label": label}):
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True)
            removed.append(container.name)
    return removed


def _remove_own_at_exit() -> None:
    # What a test run leaves when it ends without stopping its topologies.
    with contextlib.suppress(Exception):
        client = docker.from_env(timeout=10)
        try:
            pid = os.getpid()
            left = remove_containers(client, f"{LABEL_OWNER_PID}={pid}")
            if left:
                logger.info("removed %d containers at exit: %s", len(left), left)
        finally:
            client.close()


_exit_hook_registered = False


def _register_exit_hook() -> None:
    global _exit_hook_registered
    if not _exit_hook_registered:
        atexit.register(_remove_own_at_exit)
        _exit_hook_registered = True


# -- the provider -----------------------------------------------------------------


class ContainersTopology(Topology):
    """The topology with every node in a container of its own, host networking."""

    provider = "containers"

    def __init__(
        self,
        options: TopologyOptions | None = None,
        images: dict[str, str] | None = None,
    ):
        super().__init__(options)
        if os.geteuid() != 0:
            raise ConfigurationError(
                "the containers provider must run as root: it hands PostgreSQL's "
                "data directory to the image's postgres user (chown); use the "
                "local provider otherwise"
            )
        self.images = dict(images or IMAGES)
        self.run_id = secrets.token_hex(6)
        self._containers: dict[str, DockerContainer] = {}
        self._pg_ids: tuple[int, int] | None = None
        self._pg_template: Path | None = None

        # Checked now, so that a missing engine or image fails before a test
        # starts; the client is opened again by start() and closed by stop().
        client = engine()
        try:
            missing = missing_images(client, self.images)
            if missing:
                raise MissingImageError(
                    f"images not built: {', '.join(missing)}; {IMAGES_FIX}"
                )

            # Ryuk would be pulled from a registry; without its image,
            # bullproof removes its own containers (see the module docstring).
            if not testcontainers_config.ryuk_disabled:
                try:
                    client.images.get(testcontainers_config.ryuk_image)
                except docker.errors.ImageNotFound:
                    testcontainers_config.ryuk_disabled = True
                    logger.info(
                        "Ryuk image %s not present: bullproof removes its own "
                        "containers",
                        testcontainers_config.ryuk_image,
                    )
        finally:
            client.close()
        self._client: Any | None = None

    def _engine(self) -> Any:
        if self._client is None:
            self._client = engine()
        return self._client

    def _image(self, node: Node) -> str:
        return self.images["redis" if node.kind == "sentinel" else node.kind]

    def _labels(self, node: str) -> dict[str, str]:
        return {LABEL_RUN: self.run_id, LABEL_NODE: node, **_owner_labels()}

    # -- life cycle ----------------------------------------------------------------

    def _start(self) -> None:
        _register_exit_hook()
        reap_orphans(self._engine())
        super()._start()

    def _cleanup(self) -> None:
        if self._client is None:
            return

        # Anything of this run that _kill did not reach, such as a one-shot
        # initdb container of an interrupted start.
        try:
            left = remove_containers(self._client, f"{LABEL_RUN}={self.run_id}")
            if left:
                logger.info("removed %d leftover containers: %s", len(left), left)
        finally:
            self._client.close()
            self._client = None

    # -- PostgreSQL data directory -------------------------------------------------

    def _postgres_ids(self) -> tuple[int, int]:
        """The uid and gid of the image's `postgres` user, who owns the data."""
        if self._pg_ids is None:
            # The template was made by that user; asking the image takes a
            # container, which costs about a second on a busy machine.
            template = self._template_path()
            if (template / "PG_VERSION").exists():
                st = template.stat()
                self._pg_ids = (st.st_uid, st.st_gid)
            else:
                out = self._one_shot(["sh", "-c", "id -u postgres; id -g postgres"])
                uid, gid = (int(x) for x in out.split())
                self._pg_ids = (uid, gid)
        return self._pg_ids

    def _one_shot(
        self,
        command: list[str],
        *,
        user: str = "0",
        mounts: tuple[Path, ...] = (),
    ) -> str:
        """Run `command` in a throwaway postgres container; its output."""
        try:
            out = self._engine().containers.run(
                self.images["postgres"],
                command,
                user=user,
                network_mode="host",
                labels=self._labels("one-shot"),
                volumes={str(m): {"bind": str(m), "mode": "rw"} for m in mounts},
                remove=True,
                stdout=True,
                stderr=True,
            )
        except docker.errors.ContainerError as exc:
            raise StartupError(
                f"{' '.join(command[:2])} failed in a container: "
                f"{exc.stderr.decode(errors='replace')[-2000:] if exc.stderr else exc}"
            ) from exc
        return str(out.decode())

    def _template_path(self) -> Path:
        if self._pg_template is None:
            image_id = self._engine().images.get(self.images["postgres"]).id
            short = image_id.split(":")[-1][:12]
            name = f"containers-pg-{short}-{self.options.postgres_user}-wal1"
            self._pg_template = cache_dir() / name
        return self._pg_template

    def _template(self) -> Path:
        """An initialised data directory, made once per image and copied per run."""
        o = self.options
        template = self._template_path()
        if (template / "PG_VERSION").exists():
            return template

        uid, gid = self._postgres_ids()
        staging = Path(tempfile.mkdtemp(prefix="pg-template-", dir=cache_dir()))
        try:
            (staging / "pw").write_text("initial\n")
            for path in (staging, staging / "pw"):
                os.chown(path, uid, gid)
            self._one_shot(
                [
                    "initdb",
                    "--no-sync",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    f"--username={o.postgres_user}",
                    f"--pwfile={staging / 'pw'}",
                    "--encoding=UTF8",
                    "--no-instructions",
                    # 1 MB WAL segments instead of 16: every run copies the
                    # template, and its first segment was most of its size.
                    "--wal-segsize=1",
                    "-D",
                    str(staging / "data"),
                ],
                user=f"{uid}:{gid}",
                mounts=(staging,),
            )
            with contextlib.suppress(OSError):
                (staging / "data").rename(template)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return template

    def _prepare_postgres(self, node_dir: Path) -> None:
        template = self._template()
        subprocess.run(["cp", "-a", str(template), str(node_dir / "data")], check=True)
        (node_dir / "socket").mkdir(mode=0o755)
        uid, gid = self._postgres_ids()
        for path in (node_dir, node_dir / "socket"):
            os.chown(path, uid, gid)

    # -- containers ----------------------------------------------------------------

    def _command(self, node: Node) -> list[str]:
        d = self.node_dir(node.name)
        port = str(node.address.port)
        if node.kind == "toxiproxy":
            return ["toxiproxy-server", "-host", node.address.host, "-port", port]
        if node.kind == "redis":
            return ["redis-server", str(d / "redis.conf")]
        if node.kind == "sentinel":
            return ["redis-server", str(d / "sentinel.conf"), "--sentinel"]
        return ["postgres", *self.postgres_args(node)]

    def _launch(self, node: Node) -> None:
        assert self.run_dir is not None, "topology not started"
        kwargs: dict[str, Any] = {
            "network_mode": "host",
            # An explicit network, even None, keeps testcontainers from
            # looking for one to join: host networking only.
            "network": None,
            "labels": self._labels(node.name),
        }
        if node.kind == "postgres":
            uid, gid = self._postgres_ids()
            kwargs["user"] = f"{uid}:{gid}"
        env = {"BULLPROOF_LOG": str(self.node_dir(node.name) / "server.log")}

        # The mark by which a run finds the processes it left behind; a
        # container's processes are visible, with their environment, on the host.
        if "BULLPROOF_RUN_ID" in os.environ:
            env["BULLPROOF_RUN_ID"] = os.environ["BULLPROOF_RUN_ID"]
        container = (
            DockerContainer(self._image(node), env=env)
            .with_command(self._command(node))
            .with_name(f"bullproof-{self.run_id}-{node.name}")
            .with_volume_mapping(self.run_dir, str(self.run_dir), "rw")
            .with_kwargs(**kwargs)
        )
        try:
            container.start()
        except docker.errors.DockerException as exc:
            with contextlib.suppress(Exception):
                container.stop()
            raise StartupError(
                f"container of {node.name} did not start: {_first_line(exc)}"
            ) from exc
        self._containers[node.name] = container
        logger.debug(
            "started %s in container %s", node.name, container.get_container_id()[:12]
        )
        if node.kind == "postgres":
            self._after_postgres_start(node)

    def _kill(self, node: Node) -> None:
        container = self._containers.pop(node.name, None)
        if container is None:
            return
        wrapped = container.get_wrapped_container()

        # SIGKILL first, as a crash would; a paused container must be thawed
        # for the kill to take.
        with contextlib.suppress(docker.errors.APIError):
            wrapped.reload()
            if wrapped.status == "paused":
                wrapped.unpause()
            wrapped.kill(signal="SIGKILL")
        with contextlib.suppress(docker.errors.NotFound):
            container.stop(force=True)

    def _signal_pause(self, node: Node, paused: bool) -> None:
        if not self.is_running(node.name):
            raise StartupError(f"cannot pause or resume {node.name}: not running")
        wrapped = self._containers[node.name].get_wrapped_container()
        wrapped.reload()
        if paused and wrapped.status != "paused":
            wrapped.pause()
        elif not paused and wrapped.status == "paused":
            wrapped.unpause()

    def is_running(self, name: str) -> bool:
        container = self._containers.get(name)
        if container is None:
            return False
        wrapped = container.get_wrapped_container()
        try:
            wrapped.reload()
        except docker.errors.NotFound:
            return False
        return wrapped.status in ("running", "paused")

    def container_id(self, name: str) -> str:
        """The id of the container that runs node `name` now."""
        self._require(name)
        container = self._containers.get(name)
        if container is None:
            raise HarnessError(f"{name} has no container: it is not running")
        return str(container.get_container_id())

    def processes(self) -> Iterator[tuple[str, int]]:
        for name, container in list(self._containers.items()):
            wrapped = container.get_wrapped_container()
            with contextlib.suppress(docker.errors.NotFound):
                wrapped.reload()
                pid = int(wrapped.attrs.get("State", {}).get("Pid", 0))
                if pid:
                    yield name, pid
