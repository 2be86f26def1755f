"""The fixture service on each app host: the `backend` container (lab/backend:v1) on the host's own engine,
created as a production one would be, and waiting until it is healthy."""

from __future__ import annotations

from runner.errors import LabError
from runner.lab.engines import connected, docker_host
from runner.lab.layout import APP_CONTAINER, APP_HOSTS, APP_IMAGE, APP_PORT, APP_TIMEOUT, LAB_HOSTS, LABEL, Progress
from runner.lab.probes import http_health, wait_until_ready


def ensure_backends(progress: Progress) -> list[str]:
    """Start the `backend` service container (v1) on every app host engine where it is absent."""
    import docker

    started = []
    for name in APP_HOSTS:
        with connected(name) as client:
            try:
                client.containers.get(APP_CONTAINER)
                continue
            except docker.errors.NotFound:
                pass
            progress(f"starting {APP_CONTAINER} ({APP_IMAGE}:v1) on {name}")
            try:
                client.containers.run(
                    f"{APP_IMAGE}:v1",
                    name=APP_CONTAINER,
                    detach=True,
                    network_mode="host",
                    restart_policy={"Name": "unless-stopped"},
                    environment={"APP_LISTEN": f"{LAB_HOSTS[name]}:{APP_PORT}", "APP_ENV": "lab"},
                    labels={LABEL: "1"},
                    healthcheck={
                        "test": ["CMD-SHELL", "wget -q -O- http://$APP_LISTEN/health"],
                        "interval": 2_000_000_000,
                    },
                )
            except docker.errors.DockerException as exc:
                raise LabError(f"cannot start {APP_CONTAINER} on {name}: {exc}") from None
            started.append(name)
    return started


def wait_backends(names: list[str], progress: Progress) -> None:
    if not names:
        return
    progress(f"waiting for {APP_CONTAINER} on {', '.join(names)}")
    pending = wait_until_ready(names, lambda name: http_health(LAB_HOSTS[name])[0] == 200, APP_TIMEOUT)
    if pending:
        raise LabError(
            f"{APP_CONTAINER} on {', '.join(pending)} not healthy within {int(APP_TIMEOUT)} s "
            f"(see `docker -H {docker_host(pending[0])} logs {APP_CONTAINER}`)"
        )
