"""What state the lab is in: its main engine, its host image, each host's container and whether ssh reaches it."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from runner.lab.engines import connected, engine, engine_alive
from runner.lab.failures import reported
from runner.lab.images import image_exists
from runner.lab.layout import CONTAINER_PREFIX, HOST_IMAGE, LAB_HOSTS, LABEL, ssh_key_path, state_dir
from runner.lab.probes import ssh_ok


@dataclass
class HostStatus:
    name: str
    address: str
    container: str  # "running", "exited", "created", "absent" (or "unknown" when the engine is down)
    ssh_ok: bool


@dataclass
class LabStatus:
    daemon_running: bool
    image_built: bool
    hosts: list[HostStatus] = field(default_factory=list)
    ssh_key: Path = field(default_factory=lambda: ssh_key_path())

    @property
    def ready(self) -> bool:
        return self.daemon_running and all(h.container == "running" and h.ssh_ok for h in self.hosts)


@reported
def status() -> LabStatus:
    alive = engine_alive(engine("main"))
    image_built = any(state_dir().glob("cache/host-*.tar"))
    containers: dict[str, str] = {}
    if alive:
        with connected("main") as client:
            image_built = image_built or image_exists(client, HOST_IMAGE)
            for c in client.containers.list(all=True, filters={"label": LABEL}):
                containers[c.name] = str(c.status)

    def one(name: str) -> HostStatus:
        state = containers.get(CONTAINER_PREFIX + name, "absent")
        return HostStatus(name=name, address=LAB_HOSTS[name], container=state, ssh_ok=ssh_ok(name, timeout=5))

    with ThreadPoolExecutor(max_workers=len(LAB_HOSTS)) as pool:
        hosts = list(pool.map(one, LAB_HOSTS))
    return LabStatus(daemon_running=alive, image_built=image_built, hosts=hosts, ssh_key=ssh_key_path())
