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
  api_timeout:
    description: Seconds to wait for one Docker Engine API call.
    type: int
    default: 60
notes:
  - Supports check mode - it inspects, resolves the image and computes the spec, then reports what it would do.
  - An environment variable the user set to exactly the old image's default value cannot be told apart from the
    default and follows the new image's default.
  - Temporary names are C(<name>--runbook-new) and C(<name>--runbook-old). If a previous run was interrupted after
    the old container was renamed aside and no container O(name) exists, the old one is renamed back first.
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
"""

import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.runbook.ops.plugins.module_utils.docker_api import DockerClient, DockerError
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

NEW_SUFFIX = "--runbook-new"
OLD_SUFFIX = "--runbook-old"

class SwapFailed(Exception):
    """The swap did not happen. ``restored``: the old container was put back after the new one failed;
    ``unchanged``: nothing was touched at all (or everything was put back)."""

    def __init__(self, message, restored=False, unchanged=None):
        super().__init__(message)
        self.message = message
        self.restored = restored
        self.unchanged = restored if unchanged is None else unchanged


class Swapper:
    def __init__(self, client, params, check_mode, sleep=time.sleep, clock=time.monotonic):
        self.client = client
        self.p = params
        self.check_mode = check_mode
        self.actions = []
        self.warnings = []
        self.sleep = sleep
        self.clock = clock
        self.version_before = None
        self.image_id_before = None

    # -- preparation ---------------------------------------------------------------------------------------
    def _find_container(self):
        name = self.p["name"]
        container = self.client.inspect_container(name)
        aside = self.client.inspect_container(name + OLD_SUFFIX)
        if container is None and aside is not None:
            # An earlier run stopped after renaming the old container aside: put it back (and running) first.
            if self.check_mode:
                self.actions.append("would rename %s back to %s (left by an interrupted run)" % (name + OLD_SUFFIX, name))
                container, aside = aside, None
            else:
                stale = self.client.inspect_container(name + NEW_SUFFIX)
                if stale is not None:
                    self.client.remove(stale["Id"], force=True)
                self.client.rename(aside["Id"], name)
                if not aside["State"].get("Running"):
                    self.client.start(aside["Id"])
                self.actions.append("renamed %s back to %s and started it (left by an interrupted run)"
                                    % (name + OLD_SUFFIX, name))
                container, aside = self.client.inspect_container(name), None
        if container is None:
            raise SwapFailed("container %s does not exist on this Docker engine (%s); nothing changed"
                             % (name, self.client.docker_host), unchanged=True)
        if aside is not None and aside["Id"] != container["Id"]:
            if aside["State"].get("Running"):
                raise SwapFailed("both %s and %s are running; resolve by hand; nothing changed"
                                 % (name, name + OLD_SUFFIX), unchanged=True)
            if not self.check_mode:
                self.client.remove(aside["Id"], force=True)
            self.warnings.append("%sremoved the stopped %s left by an interrupted run"
                                 % ("would have " if self.check_mode else "", name + OLD_SUFFIX))
        stale = self.client.inspect_container(name + NEW_SUFFIX)
        if stale is not None:
            if not self.check_mode:
                self.client.remove(stale["Id"], force=True)
            self.warnings.append("%sremoved %s left by an interrupted run"
                                 % ("would have " if self.check_mode else "", name + NEW_SUFFIX))
        return container

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

    # -- the swap ------------------------------------------------------------------------------------------
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

        result["changed"] = True
        if self.check_mode:
            self.actions.append("would replace %s: %s -> %s, keeping its run spec" % (name, version_before, ref))
            return result

        spec = spec_before
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
            if running:
                self.client.stop(old["Id"], self.p.get("stop_timeout"))
                state["stopped_old"] = True
                self.actions.append("stopped the old %s" % name)
            self.client.rename(old["Id"], name + OLD_SUFFIX)
            state["renamed_old"] = True
            self.client.rename(new_id, name)
            state["renamed_new"] = True
            self.client.start(new_id)
            self.actions.append("started %s on %s" % (name, ref))
            self._wait(new_id)
        except (DockerError, SwapFailed) as exc:
            reason = exc.message
            logs = self.client.logs(new_id, tail=20).strip()
            self._restore(old, new_id, state, running)
            message = "%s on %s failed: %s; restored the old container (%s)" % (name, ref, reason, version_before)
            if logs:
                message += "; last log lines of the new container: %s" % logs[-1500:]
            raise SwapFailed(message, restored=True) from exc

        self.client.remove(old["Id"], force=True)
        self.actions.append("removed the old container %s" % old["Id"][:12])
        new = self.client.inspect_container(new_id)
        result.update(
            container_id=new_id,
            spec=spec,
            health=health_status(new),
        )
        return result

    def _wait(self, container_id):
        """Fail unless the container runs; with wait_healthy, wait for a healthcheck to pass."""
        deadline = self.clock() + max(self.p.get("wait_healthy") or 0, 0)
        while True:
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
            api_timeout=dict(type="int", default=60),
        ),
        required_one_of=[("image", "tag")],
        mutually_exclusive=[("image", "tag")],
        supports_check_mode=True,
    )
    swapper = None
    try:
        client = DockerClient(module.params["docker_host"], timeout=module.params["api_timeout"])
        swapper = Swapper(client, module.params, module.check_mode)
        result = swapper.run()
    except (SwapFailed, DockerError) as exc:
        unchanged = getattr(exc, "unchanged", False)
        before = swapper.version_before if swapper else None
        module.fail_json(
            msg=exc.message,
            restored=getattr(exc, "restored", False),
            container=module.params["name"],
            actions=swapper.actions if swapper else [],
            version_before=before,
            version_after=before if unchanged else None,
            image_id_before=swapper.image_id_before if swapper else None,
        )
    for warning in swapper.warnings:
        module.warn(warning)
    result["actions"] = swapper.actions
    result["msg"] = "; ".join(swapper.actions)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
