"""Bringing the lab up, back to its initial state, and down; each idempotent and under the lab's lock."""

from __future__ import annotations

import contextlib
from typing import Any

from runner.errors import LabError
from runner.lab import control_files
from runner.lab.backends import ensure_backends, wait_backends
from runner.lab.engines import all_engines, connected, engine_alive, start_engine, stop_engine
from runner.lab.failures import reported
from runner.lab.hosts import ensure_hosts, prune_dangling, remove_containers, wait_hosts
from runner.lab.images import ensure_app_images, ensure_host_image
from runner.lab.layout import APP_HOSTS, LABEL, Progress
from runner.lab.leftovers import cleanup_runtime
from runner.lab.preflight import preflight, require_root
from runner.lab.status_check import LabStatus, status


@reported
def up(progress: Progress = print) -> LabStatus:
    """Bring the lab up (idempotent: only what is missing is built, started or created)."""
    return _bring_up(progress, fresh=False)


@reported
def reset(progress: Progress = print) -> LabStatus:
    """Back to the initial state: hosts recreated from the cached image, backends on v1, shop reseeded."""
    st = _bring_up(progress, fresh=True)
    progress("lab reset to its initial state")
    return st


@reported
def down(progress: Progress = print) -> None:
    """Remove every lab container, stop every lab dockerd, unmount and remove the runtime directory."""
    require_root()
    with control_files.locked():
        for eng in reversed(all_engines()):  # app engines first: their containers, then the hosts
            if engine_alive(eng):
                with connected(eng.name) as docker_client:
                    remove_containers(docker_client, LABEL if eng.name == "main" else None, progress)
            stop_engine(eng, progress)
        cleanup_runtime(progress)
    progress("lab is down")


def _bring_up(progress: Progress, fresh: bool) -> LabStatus:
    preflight()
    with control_files.locked():
        control_files.prepare_dirs()
        control_files.ensure_ssh_key(progress)
        control_files.sync_host_files()
        for eng in all_engines():
            start_engine(eng, progress)
        with connected("main") as main:
            ensure_host_image(main, progress)
            if fresh:
                _remove_everything(main, progress)
            ensure_app_images(main, progress)  # (again after a drill retagged lab/backend:*)
            created = ensure_hosts(main, progress)
            wait_hosts(main, created, progress)
        wait_backends(ensure_backends(progress), progress)
        # under the lock: another process's reset must not run between the work and this check
        st = status()
    bad = [h.name for h in st.hosts if not (h.container == "running" and h.ssh_ok)]
    if bad:
        raise LabError(f"lab hosts not reachable over ssh: {', '.join(bad)}; run `runbook lab reset`")
    return st


def _remove_everything(main: Any, progress: Progress) -> None:
    """Every app host engine's containers, volumes and dangling images, then the host containers."""
    for name in APP_HOSTS:
        with connected(name) as app_engine:
            remove_containers(app_engine, None, progress)
            with contextlib.suppress(Exception):
                app_engine.volumes.prune()
            prune_dangling(app_engine)
    remove_containers(main, LABEL, progress)
    prune_dangling(main)  # host images of an older recipe
