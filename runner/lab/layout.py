"""The lab's fixed facts: its hosts and their addresses, ports, names, recipes, time limits, and where its files
live on the machine."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

from runner.paths import LAB_RECIPES_DIR

LAB_HOSTS: dict[str, str] = {
    "app1": "127.0.10.11",
    "app2": "127.0.10.12",
    "db": "127.0.10.21",
    "backup": "127.0.10.31",
    "lb": "127.0.10.41",
}
APP_HOSTS: tuple[str, ...] = ("app1", "app2")
SSH_PORT = 2222
APP_PORT = 8080
LB_PORT = 8080
PG_PORT = 5432
REDIS_PORT = 6379
DB_USER = "lab"
DB_PASSWORD = "lab"
DB_NAME = "shop"

HOST_IMAGE = "runbook-lab/host:bookworm"
APP_IMAGE = "lab/backend"
APP_VERSIONS: tuple[str, ...] = ("v1", "v2")
APP_CONTAINER = "backend"
CONTAINER_PREFIX = "runbook-lab-"
LABEL = "runbook.lab"
RELEASES_DIR = "/var/lib/runbook/releases"
CGROUP_PARENT = "runbook-lab"  # the lab's containers live in /<controller>/runbook-lab/<engine>/<id>

RECIPES_DIR = LAB_RECIPES_DIR  # the checkout's lab/, or the installed package's copy
HOST_RECIPE = ("build-host-image.sh",)
APP_RECIPE = ("build-app-images.sh", "app/server.c")
HOST_FILES = ("host-init.sh", "shop-seed.sql")

DOCKERD_TIMEOUT = 60.0
HOST_TIMEOUT = 120.0
APP_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0

Progress = Callable[[str], None]


def state_dir() -> Path:
    return Path(os.environ.get("RUNBOOK_LAB_DIR") or "/var/lib/runbook-lab")


def run_dir() -> Path:
    return Path(os.environ.get("RUNBOOK_LAB_RUN_DIR") or "/run/runbook-lab")


def ssh_key_path() -> Path:
    return state_dir() / "ssh" / "id_ed25519"


def cgroup_parent() -> str:
    """One cgroup subtree per lab (a lab with another RUNBOOK_LAB_RUN_DIR must not touch this one's)."""
    if run_dir() == Path("/run/runbook-lab"):
        return CGROUP_PARENT
    return f"{CGROUP_PARENT}-{hashlib.sha256(str(run_dir()).encode()).hexdigest()[:8]}"
