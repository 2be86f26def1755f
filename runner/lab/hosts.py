"""The lab hosts: one container per host on the main engine (created from the host image, each on its own
loopback address), waiting until each serves what it should, and removing containers."""

from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from runner.errors import LabError
from runner.lab.engines import main_docker_host
from runner.lab.layout import (
    APP_HOSTS,
    CONTAINER_PREFIX,
    HOST_IMAGE,
    HOST_TIMEOUT,
    LAB_HOSTS,
    LABEL,
    LB_PORT,
    SSH_PORT,
    Progress,
    run_dir,
    state_dir,
)
from runner.lab.preflight import check_ports_free, docker_cli
from runner.lab.probes import pg_ok, ssh_ok, tcp_ok, wait_until_ready


def ensure_hosts(main: Any, progress: Progress) -> list[str]:
    """Create (or recreate) every host container that is not running; returns the names created."""
    missing = _remove_stopped_hosts(main)
    if not missing:
        return []
    check_ports_free(missing)
    for name in missing:
        progress(f"starting lab host {name} ({LAB_HOSTS[name]})")
        _run_host(main, name)
    return missing


def _remove_stopped_hosts(main: Any) -> list[str]:
    """The hosts without a running container (a stopped one is removed)."""
    import docker

    existing = {c.name: c for c in main.containers.list(all=True, filters={"label": LABEL})}
    missing = []
    for name in LAB_HOSTS:
        c = existing.get(CONTAINER_PREFIX + name)
        if c is not None and c.status == "running":
            continue
        if c is not None:
            with contextlib.suppress(docker.errors.NotFound):
                c.remove(force=True)
        missing.append(name)
    return missing


def _run_host(main: Any, name: str) -> None:
    import docker

    volumes: dict[str, dict[str, str]] = {
        str(state_dir() / "hostfiles"): {"bind": "/etc/runbook-lab", "mode": "ro"},
        str(docker_cli()): {"bind": "/usr/bin/docker", "mode": "ro"},
    }
    if name in APP_HOSTS:
        volumes[str(run_dir() / name)] = {"bind": f"/run/runbook-lab/{name}", "mode": "rw"}
    try:
        main.containers.run(
            HOST_IMAGE,
            name=CONTAINER_PREFIX + name,
            hostname=name,
            network_mode="host",
            init=True,
            detach=True,
            environment={"LAB_HOST": name, "LAB_ADDR": LAB_HOSTS[name]},
            labels={LABEL: "1", f"{LABEL}.host": name},
            extra_hosts=dict(LAB_HOSTS),  # the hosts know each other by name
            volumes=volumes,
            tmpfs={"/tmp": "rw,exec,mode=1777"},
            stop_signal="SIGTERM",
        )
    except docker.errors.DockerException as exc:
        raise LabError(f"cannot start lab host {name}: {exc}") from None


def wait_hosts(main: Any, names: list[str], progress: Progress) -> None:
    """Wait until the hosts created (or, none created, every host) serve ssh and their own services."""
    if names:
        progress(f"waiting for {', '.join(names)}")
    pending = wait_until_ready(names or list(LAB_HOSTS), lambda name: _host_ready(main, name), HOST_TIMEOUT)
    if pending:
        raise LabError(
            f"lab hosts {', '.join(pending)} not ready within {int(HOST_TIMEOUT)} s "
            f"(see `docker -H {main_docker_host()} logs {CONTAINER_PREFIX}{pending[0]}`)"
        )


def _host_ready(main: Any, name: str) -> bool:
    import docker

    try:
        c = main.containers.get(CONTAINER_PREFIX + name)
    except docker.errors.NotFound:
        raise LabError(f"lab host {name} vanished while starting; run `runbook lab reset`") from None
    if c.status not in ("running", "created"):
        logs = c.logs(tail=5).decode(errors="replace").strip().splitlines()
        raise LabError(f"lab host {name} exited while starting: {logs[-1] if logs else c.status}")
    if not _exec_ok(c, ["test", "-e", "/run/runbook-lab.ready"]):
        return False
    if not tcp_ok(LAB_HOSTS[name], SSH_PORT) or not ssh_ok(name, timeout=10):
        return False
    if name == "db":
        return pg_ok()
    if name == "lb":
        return tcp_ok(LAB_HOSTS[name], LB_PORT)
    return True


def _exec_ok(container: Any, argv: list[str]) -> bool:
    try:
        code, _ = container.exec_run(argv)
    except Exception:
        return False
    return int(code) == 0


def remove_containers(client: Any, label: str | None, progress: Progress) -> None:
    """Remove (in parallel) every container of an engine, or those with a label."""
    import docker

    filters = {"label": label} if label else {}
    containers = client.containers.list(all=True, filters=filters)
    if containers:
        progress(f"removing {', '.join(c.name for c in containers)}")

    def rm(c: Any) -> None:
        with contextlib.suppress(docker.errors.NotFound):
            c.remove(force=True)

    with ThreadPoolExecutor(max_workers=max(1, len(containers))) as pool:
        list(pool.map(rm, containers))


def prune_dangling(client: Any) -> None:
    with contextlib.suppress(Exception):
        client.images.prune(filters={"dangling": True})
