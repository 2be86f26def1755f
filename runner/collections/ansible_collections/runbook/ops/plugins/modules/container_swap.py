#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: runbook-runner maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: container_swap
short_description: Replace a Docker container's image while keeping its run spec
version_added: "0.1.0"
description:
  - Replaces the image of the container O(name) with O(image) (or O(tag) of the same repository), keeping the
    container's run spec (environment, labels, command, mounts and volumes, network mode and networks, ports,
    restart policy, resources, healthcheck, and every other C(HostConfig) setting).
  - The spec is computed from the old container's inspect document; values that merely came from the B(old image)
    defaults (environment entries equal to the old image's, and C(Cmd), C(Entrypoint), C(WorkingDir), C(User),
    C(Labels), C(ExposedPorts), C(Healthcheck), C(Volumes), C(StopSignal) equal to the old image's) are left
    out, so the new image's own defaults apply.
  - The target image must be present in the engine B(before) anything is stopped; with O(pull=true) a pull is
    attempted first. When it is missing the module fails and nothing is changed.
  - Sequence - create the new container under a temporary name, stop the old one, rename it aside, rename the
    new one to O(name), start it (and optionally wait until healthy). If the start or the health wait fails the
    new container is removed and the old one is renamed back and started again; the module then fails. The old
    container is removed only once the new one runs.
  - Anonymous volumes of the old container are handed over to the new one, so their data is kept.
  - If the container already runs exactly the target image id nothing is changed.
  - Talks to the Docker Engine API over its unix socket with the Python standard library; the docker SDK is not
    needed on the host.
author:
  - runbook-runner maintainers
options:
  name:
    description: Name of the container to swap.
    type: str
    required: true
  image:
    description:
      - Full image reference to run, for example C(lab/backend:v2) or C(registry:5000/app@sha256:...).
      - Exactly one of O(image) and O(tag) is required.
    type: str
  tag:
    description:
      - A bare tag; the image is the container's current repository with this tag (C(lab/backend:v1) + C(v2) gives
        C(lab/backend:v2)).
    type: str
  image_id:
    description:
      - Expected image id (C(sha256:...)) of the target, for example from the release ledger. When the reference
        now points at another image but this id is still present, the container is created from the id.
    type: str
  docker_host:
    description: Docker Engine endpoint, C(unix:///path) or C(tcp://host:port).
    type: str
    default: unix:///var/run/docker.sock
  pull:
    description: Try to pull the image when the engine does not have it (before anything is stopped).
    type: bool
    default: false
  wait_healthy:
    description:
      - Seconds to wait for the new container's health status to become C(healthy), when the container has a
        healthcheck. C(0) does not wait. If it turns C(unhealthy) or the time runs out, the old container is
        restored and the module fails.
    type: int
    default: 0
  stop_timeout:
    description: Seconds to wait for the old container to stop before it is killed; default is the container's
      own stop timeout (Docker's default 10).
    type: int
  lock_dir:
    description: Directory of the lock that serializes the swaps of one container on the host.
    type: path
    default: /var/lib/runbook/locks
  api_timeout:
    description: Seconds to wait for one Docker Engine API call.
    type: int
    default: 60
  runbook_timeout:
    description:
      - Seconds the swap may take (0 - no limit; the rendered step sets it from its C(timeout)). When the time is
        up, or the run that started the module is gone, before the old container stopped nothing is changed;
        after, the new container is removed and the old one started again, as when the new one fails. The
        module fails saying which container runs (C(running)).
    type: float
    default: 0.0
notes:
  - Supports check mode - it inspects, resolves the image and computes the spec, then reports what it would do.
  - An environment variable the user set to exactly the old image's default value cannot be told apart from the
    default and follows the new image's default.
  - Temporary names are C(<name>--runbook-new) and C(<name>--runbook-old). What a swap interrupted at any moment
    left is put right first (module_utils/swap_leftovers) - the old container renamed back and started, or a new
    one that was never started started when it has the image asked for now, the old one removed only once it runs
    - so there is always a container of the service to go back to.
  - Swaps of one container on a host are serialized by an exclusive lock in O(lock_dir).
"""

EXAMPLES = r"""
- name: Deploy v2 of the backend, keeping its run spec
  runbook.ops.container_swap:
    name: backend
    image: lab/backend:v2
    wait_healthy: 60

- name: Go back to v1 of the same repository
  runbook.ops.container_swap:
    name: backend
    tag: v1

- name: Roll back to an exact image id recorded in the ledger
  runbook.ops.container_swap:
    name: backend
    image: lab/backend:v1
    image_id: sha256:a48194f572d8687360d7deee4d6fd4af48e81369f7195f24027d8eb7ea19e3ab
"""

RETURN = r"""
container:
  description: Name of the container.
  returned: always
  type: str
  sample: backend
container_id:
  description: Id of the container now running under O(name) (the old id when nothing changed or in check mode).
  returned: success
  type: str
container_id_before:
  description: Id of the container before the swap.
  returned: success
  type: str
version_before:
  description: Image reference the container ran before.
  returned: success
  type: str
  sample: lab/backend:v1
version_after:
  description: Image reference the container runs after the swap (what it would run, in check mode).
  returned: success
  type: str
  sample: lab/backend:v2
image_id_before:
  description: Image id before.
  returned: success
  type: str
image_id_after:
  description: Image id after.
  returned: success
  type: str
digests_before:
  description: Repository digests of the old image (empty for images built or imported locally).
  returned: success
  type: list
  elements: str
digests_after:
  description: Repository digests of the new image.
  returned: success
  type: list
  elements: str
spec:
  description: The run spec used to create the new container (C(config), C(host_config), C(networking_config),
    C(extra_networks)); with no change, the spec of the running container.
  returned: success
  type: dict
spec_before:
  description: The user's run spec of the old container (image defaults removed), for the release ledger.
  returned: success
  type: dict
health:
  description: Health status of the container at the end (C(healthy), C(starting), ...), or null without a
    healthcheck.
  returned: success
  type: str
actions:
  description: What was done (or would be done in check mode), in order.
  returned: always
  type: list
  elements: str
restored:
  description: True when the new container failed and the old one was put back.
  returned: failure
  type: bool
running:
  description: Image reference of the container running under O(name) at the end (null when none runs).
  returned: always
  type: str
stopped:
  description: Why the swap was stopped - timeout, orphaned, signal (null when it was not).
  returned: failure
  type: str
"""

import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.runbook.ops.plugins.module_utils.docker_api import DockerClient, DockerError
from ansible_collections.runbook.ops.plugins.module_utils.host_work import (
    WorkStopped, current_work, start_work,
)
from ansible_collections.runbook.ops.plugins.module_utils.swap_leftovers import (  # noqa: F401 (re-exported)
    NEW_SUFFIX, OLD_SUFFIX, InterruptedSwap, SwapFailed, swap_lock,
)
from ansible_collections.runbook.ops.plugins.module_utils.docker_spec import (  # noqa: F401 (re-exported)
    anonymous_volume_binds,
    create_body,
    health_status,
    image_ref,
    networking,
    ref_with_tag,
    rewrite_links,
    run_spec,
    user_config,
    user_host_config,
)


class SwapPreparation(InterruptedSwap):
    """What comes before anything changes: the container (with what an interrupted run left put right) and the
    image to run it on."""

    def __init__(self, client, params, check_mode, sleep=time.sleep, clock=time.monotonic, work=None):
        self.client = client
        self.p = params
        self.check_mode = check_mode
        self.work = work if work is not None else current_work()
        self.actions = []
        self.warnings = []
        self.sleep = sleep
        self.clock = clock
        self.version_before = None
        self.image_id_before = None

    def _target(self, container, container_ref):
        """(reference to create from, image inspect document). Fails before anything changed."""
        if self.p.get("tag"):
            ref = ref_with_tag(container_ref, self.p["tag"])
        else:
            ref = self.p["image"]
        want_id = self.p.get("image_id")
        image = self.client.inspect_image(ref)
        pull_error = None
        if (image is None or (want_id and image["Id"] != want_id)) and self.p.get("pull"):
            if want_id and self.client.inspect_image(want_id) is not None:
                pass  # the exact bytes are here; no need to pull
            elif self.check_mode:
                self.actions.append("would pull %s" % ref)
                return ref, {"Id": want_id or "", "RepoDigests": [], "Config": {}}
            else:
                try:
                    self.client.pull(ref)
                    self.actions.append("pulled %s" % ref)
                except DockerError as exc:
                    pull_error = exc.message
                image = self.client.inspect_image(ref)
        if want_id and (image is None or image["Id"] != want_id):
            by_id = self.client.inspect_image(want_id)
            if by_id is not None:
                if image is not None:
                    self.warnings.append("%s now points at %s; using the recorded image %s"
                                         % (ref, image["Id"][:19], want_id[:19]))
                return want_id, by_id
            image = None
        if image is None:
            what = ref + (" (%s)" % want_id if want_id else "")
            message = "image %s is not present in the Docker engine (%s)" % (what, self.client.docker_host)
            if pull_error:
                message += " and the pull failed: %s" % pull_error
            elif not self.p.get("pull"):
                message += " (pull: false)"
            raise SwapFailed(message + "; nothing changed, %s still runs %s" % (self.p["name"], container_ref),
                             unchanged=True)
        return ref, image



class Swapper(SwapPreparation):
    """Replaces the container by one created from the target image with the same run spec, and puts the old one
    back when the new one does not come up."""

    def run(self):
        name = self.p["name"]
        old = self._find_container()
        old_image = self.client.inspect_image(old["Image"])
        version_before = image_ref(old, old_image)
        self.version_before, self.image_id_before = version_before, old["Image"]
        ref, target = self._target(old, version_before)
        spec_before = run_spec(old, old_image)
        result = {
            "container": name,
            "container_id_before": old["Id"],
            "container_id": old["Id"],
            "version_before": version_before,
            "image_id_before": old["Image"],
            "digests_before": list((old_image or {}).get("RepoDigests") or []),
            "version_after": ref if not ref.startswith("sha256:") else (self.p.get("image") or ref),
            "image_id_after": target["Id"],
            "digests_after": list(target.get("RepoDigests") or []),
            "spec_before": spec_before,
            "spec": spec_before,
            "health": health_status(old),
            "changed": False,
        }
        running = bool(old["State"].get("Running"))
        if old["Image"] == target["Id"]:
            return self._start_in_place(old, ref, target, running, result)
        result["changed"] = True
        if self.check_mode:
            self.actions.append("would replace %s: %s -> %s, keeping its run spec" % (name, version_before, ref))
            return result
        try:
            self.work.check()
        except WorkStopped as exc:
            raise SwapFailed("swap of %s %s before anything changed; %s still runs %s"
                             % (name, exc, name, version_before), unchanged=True)
        new_id = self._replace(old, ref, spec_before, running, version_before)
        self.client.remove(old["Id"], force=True)
        self.actions.append("removed the old container %s" % old["Id"][:12])
        new = self.client.inspect_container(new_id)
        result.update(
            container_id=new_id,
            spec=spec_before,
            health=health_status(new),
        )
        return result

    def _start_in_place(self, old, ref, target, running, result):
        """The container is on the target image already: start it unless it runs."""
        name = self.p["name"]
        if running:
            self.actions.append("%s already runs %s (%s); nothing to do" % (name, ref, target["Id"][:19]))
            return result
        result["changed"] = True
        if self.check_mode:
            self.actions.append("would start %s (already on %s)" % (name, ref))
            return result
        self.client.start(old["Id"])
        self.actions.append("started %s (already on %s)" % (name, ref))
        self._wait(old["Id"])
        result["health"] = health_status(self.client.inspect_container(old["Id"]))
        return result

    def _replace(self, old, ref, spec, running, version_before):
        """Create the new container beside the old, stop and rename the old aside, start the new under the
        name; the new container's id. On failure the old one is restored and SwapFailed says so."""
        name = self.p["name"]
        try:
            new_id = self.client.create_container(name + NEW_SUFFIX, create_body(spec, ref))
        except DockerError as exc:
            raise SwapFailed("creating the new container from %s failed: %s; nothing changed" % (ref, exc.message),
                             unchanged=True) from exc
        self.actions.append("created %s from %s" % (name + NEW_SUFFIX, ref))
        state = {"stopped_old": False, "renamed_old": False, "renamed_new": False}
        try:
            for net_name, endpoint in spec["extra_networks"].items():
                self.client.connect_network(net_name, new_id, endpoint)
            self.work.check()
            if running:
                self.client.stop(old["Id"], self.p.get("stop_timeout"))
                state["stopped_old"] = True
                self.actions.append("stopped the old %s" % name)
                self.work.note(container=name, running=None)
            self.client.rename(old["Id"], name + OLD_SUFFIX)
            state["renamed_old"] = True
            self.client.rename(new_id, name)
            state["renamed_new"] = True
            self.work.check()
            self.client.start(new_id)
            self.actions.append("started %s on %s" % (name, ref))
            self.work.note(container=name, running=ref)
            self._wait(new_id)
        except (DockerError, SwapFailed, WorkStopped) as exc:
            reason = str(exc) if isinstance(exc, WorkStopped) else exc.message
            logs = self.client.logs(new_id, tail=20).strip()
            self._restore(old, new_id, state, running)
            how = reason if isinstance(exc, WorkStopped) else "failed: " + reason
            message = "%s on %s %s; restored the old container (%s)" % (name, ref, how, version_before)
            if logs:
                message += "; last log lines of the new container: %s" % logs[-1500:]
            raise SwapFailed(message, restored=True) from exc
        return new_id

    def _wait(self, container_id):
        """Fail unless the container runs; with wait_healthy, wait for a healthcheck to pass."""
        deadline = self.clock() + max(self.p.get("wait_healthy") or 0, 0)
        while True:
            self.work.check()
            current = self.client.inspect_container(container_id)
            if current is None:
                raise SwapFailed("the new container disappeared")
            state = current.get("State") or {}
            if not state.get("Running") or state.get("Restarting"):
                raise SwapFailed("the new container is not running (exit code %s%s)"
                                 % (state.get("ExitCode"), ", " + state["Error"] if state.get("Error") else ""))
            status = health_status(current)
            if not self.p.get("wait_healthy") or status is None or status == "healthy":
                if status == "healthy":
                    self.actions.append("%s is healthy" % self.p["name"])
                return
            if status == "unhealthy":
                log = ((current["State"]["Health"].get("Log") or [{}])[-1]).get("Output", "").strip()
                raise SwapFailed("the new container became unhealthy%s" % (": " + log[-300:] if log else ""))
            if self.clock() >= deadline:
                raise SwapFailed("the new container was not healthy within %ss (status %s)"
                                 % (self.p["wait_healthy"], status))
            self.sleep(0.25)

    def _restore(self, old, new_id, state, was_running):
        name = self.p["name"]
        problems = []

        def attempt(what, fn, *args):
            try:
                fn(*args)
            except DockerError as exc:
                problems.append("%s: %s" % (what, exc.message))

        attempt("remove the new container", self.client.remove, new_id, True)
        if state["renamed_old"]:
            attempt("rename the old container back", self.client.rename, old["Id"], name)
        if was_running:
            attempt("start the old container", self.client.start, old["Id"])
        self.actions.append("removed the new container and restored the old %s" % name)
        if problems:
            raise SwapFailed("restoring the old container failed too (%s)" % "; ".join(problems), restored=False)
        self.work.note(container=name, running=image_ref(old, self.client.inspect_image(old["Image"])))


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            image=dict(type="str"),
            tag=dict(type="str"),
            image_id=dict(type="str"),
            docker_host=dict(type="str", default="unix:///var/run/docker.sock"),
            pull=dict(type="bool", default=False),
            wait_healthy=dict(type="int", default=0),
            stop_timeout=dict(type="int"),
            lock_dir=dict(type="path", default="/var/lib/runbook/locks"),
            api_timeout=dict(type="int", default=60),
            runbook_timeout=dict(type="float", default=0.0),
        ),
        required_one_of=[("image", "tag")],
        mutually_exclusive=[("image", "tag")],
        supports_check_mode=True,
    )
    work = start_work("container_swap", module.params)
    swapper = client = None
    try:
        client = DockerClient(module.params["docker_host"], timeout=module.params["api_timeout"])
        swapper = Swapper(client, module.params, module.check_mode, work=work)
        with swap_lock(module.params, module.check_mode):
            result = swapper.run()
    except (SwapFailed, DockerError) as exc:
        unchanged = getattr(exc, "unchanged", False)
        before = swapper.version_before if swapper else None
        running = what_runs(client, module.params["name"])
        message = work.explain(exc.message)
        work.finish(True, message, container=module.params["name"], running=running)
        module.fail_json(
            msg=message,
            restored=getattr(exc, "restored", False),
            container=module.params["name"],
            actions=swapper.actions if swapper else [],
            version_before=before,
            version_after=before if unchanged else None,
            image_id_before=swapper.image_id_before if swapper else None,
            running=running,
            stopped=work.reason,
        )
    for warning in swapper.warnings:
        module.warn(warning)
    result["actions"] = swapper.actions
    result["msg"] = "; ".join(swapper.actions)
    result["running"] = result["version_after"] if not module.check_mode else result["version_before"]
    work.finish(False, result["msg"], container=module.params["name"], running=result["running"])
    module.exit_json(**result)


def what_runs(client, name):
    """Image reference of the container running under `name` (None: none runs, or the engine cannot say)."""
    if client is None:
        return None
    try:
        container = client.inspect_container(name)
        if container is None or not (container.get("State") or {}).get("Running"):
            return None
        return image_ref(container, client.inspect_image(container["Image"]))
    except DockerError:
        return None


if __name__ == "__main__":
    main()
