"""The local lab: real hosts in containers on a project-owned Docker engine (DESIGN section 7).

Layout on the machine (state survives `down`, runtime does not):

    /var/lib/runbook-lab/          ($RUNBOOK_LAB_DIR)
        ssh/id_ed25519             the key Ansible and `runbook lab ssh` use (root on every host)
        cache/host-<recipe>.tar    the debootstrapped host root filesystem (built once)
        cache/app-<recipe>/        the fixture application's root filesystems (backend-v1.tar, backend-v2.tar)
        engines/<engine>/          dockerd data roots: main (the lab hosts), app1, app2 (each app host's engine)
        hostfiles/                 mounted read-only at /etc/runbook-lab in every host (init script, seed, key)
        logs/                      dockerd logs
    /run/runbook-lab/              ($RUNBOOK_LAB_RUN_DIR)
        docker.sock, docker.pid    the main engine
        <app>/docker.sock          an app host's engine, the directory mounted into that host
        exec/<engine>/             dockerd exec roots (with their own containerd)

Every container uses the machine's network namespace; each host's daemons bind to its own loopback address.

The modules, each one job: layout (hosts, ports, names, paths), preflight (root, packages, free ports),
control_files (the lab's directories, lock, SSH key, host files), engines (the dockerds), leftovers (what dead
engines leave: processes, mounts, cgroups), images (host and app images), hosts (host containers), backends (the
app service containers), probes (is a service answering), ssh_access (ssh to a host), status_check (LabStatus),
lifecycle (up, reset, down). This package's names are the lab's API.
"""

from __future__ import annotations

from runner.lab.engines import docker_host, main_docker_host
from runner.lab.layout import (
    APP_CONTAINER,
    APP_HOSTS,
    APP_IMAGE,
    APP_PORT,
    APP_RECIPE,
    APP_VERSIONS,
    CONTAINER_PREFIX,
    DB_NAME,
    DB_PASSWORD,
    DB_USER,
    HOST_FILES,
    HOST_IMAGE,
    HOST_RECIPE,
    LAB_HOSTS,
    LABEL,
    LB_PORT,
    PG_PORT,
    RECIPES_DIR,
    REDIS_PORT,
    RELEASES_DIR,
    SSH_PORT,
    Progress,
    run_dir,
    ssh_key_path,
    state_dir,
)
from runner.lab.lifecycle import down, reset, up
from runner.lab.ssh_access import ssh, ssh_argv
from runner.lab.status_check import HostStatus, LabStatus, status

__all__ = [
    "APP_CONTAINER",
    "APP_HOSTS",
    "APP_IMAGE",
    "APP_PORT",
    "APP_RECIPE",
    "APP_VERSIONS",
    "CONTAINER_PREFIX",
    "DB_NAME",
    "DB_PASSWORD",
    "DB_USER",
    "HOST_FILES",
    "HOST_IMAGE",
    "HOST_RECIPE",
    "LABEL",
    "LAB_HOSTS",
    "LB_PORT",
    "PG_PORT",
    "RECIPES_DIR",
    "REDIS_PORT",
    "RELEASES_DIR",
    "SSH_PORT",
    "HostStatus",
    "LabStatus",
    "Progress",
    "docker_host",
    "down",
    "main_docker_host",
    "reset",
    "run_dir",
    "ssh",
    "ssh_argv",
    "ssh_key_path",
    "state_dir",
    "status",
    "up",
]
