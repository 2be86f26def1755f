# -*- coding: utf-8 -*-
# Copyright: runbook-runner maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""A container's user run spec: its inspect document minus what came from the image defaults.

Shared by container_swap (to recreate a container on another image) and release_ledger (to record what runs).
Pure functions over Docker inspect documents, no I/O except describe_container().
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import re

from ansible_collections.runbook.ops.plugins.module_utils.docker_api import split_image_ref

# Config keys carried from the old container to the new one (Image is set to the target).
CONFIG_KEYS = (
    "Hostname",
    "Domainname",
    "User",
    "AttachStdin",
    "AttachStdout",
    "AttachStderr",
    "ExposedPorts",
    "Tty",
    "OpenStdin",
    "StdinOnce",
    "Env",
    "Cmd",
    "Healthcheck",
    "Volumes",
    "WorkingDir",
    "Entrypoint",
    "NetworkDisabled",
    "MacAddress",
    "Labels",
    "StopSignal",
    "StopTimeout",
    "Shell",
)
# Scalar / whole-value keys dropped when equal to the old image's value.
IMAGE_DEFAULT_KEYS = ("User", "WorkingDir", "Healthcheck", "StopSignal", "Shell")
# Map keys filtered entry by entry against the old image's.
IMAGE_DEFAULT_MAPS = ("Labels", "ExposedPorts", "Volumes")

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def _empty(value):
    return value is None or value == "" or value == [] or value == {}


def _same(a, b):
    if _empty(a) and _empty(b):
        return True
    return a == b


def user_config(container, image):
    """The user's part of a container's Config: everything except what came from the image defaults.

    ``container`` is the container inspect document, ``image`` the inspect document of the image it was created
    from (None when that image is gone: then nothing can be told apart and the whole Config is kept).
    """
    src = container.get("Config") or {}
    img = None
    if image is not None:
        img = image.get("Config") or {}
    host_config = container.get("HostConfig") or {}
    network_mode = host_config.get("NetworkMode") or ""
    cfg = {}
    for key in CONFIG_KEYS:
        if key in src and not _empty(src[key]) and src[key] is not False:
            cfg[key] = copy.deepcopy(src[key])

    # Hostname: Docker generates it (short id) or takes the host's with host/container networking.
    short_id = (container.get("Id") or "")[:12]
    if network_mode == "host" or network_mode.startswith("container:") or cfg.get("Hostname") == short_id:
        cfg.pop("Hostname", None)
        cfg.pop("Domainname", None)

    if img is None:
        return cfg

    image_env = set(img.get("Env") or [])
    env = [e for e in cfg.get("Env", []) if e not in image_env]
    if env:
        cfg["Env"] = env
    else:
        cfg.pop("Env", None)

    entrypoint_from_image = _same(cfg.get("Entrypoint"), img.get("Entrypoint"))
    if entrypoint_from_image:
        cfg.pop("Entrypoint", None)
        # With the image's entrypoint, a Cmd equal to the image's is the image default too. With a user
        # entrypoint Docker does not merge the image's Cmd, so the Cmd is the user's whatever it is.
        if _same(cfg.get("Cmd"), img.get("Cmd")):
            cfg.pop("Cmd", None)

    for key in IMAGE_DEFAULT_KEYS:
        if key in cfg and _same(cfg[key], img.get(key)):
            del cfg[key]

    for key in IMAGE_DEFAULT_MAPS:
        if key in cfg:
            image_map = img.get(key) or {}
            kept = {k: v for k, v in cfg[key].items() if k not in image_map or image_map[k] != v}
            if kept:
                cfg[key] = kept
            else:
                del cfg[key]
    return cfg


def rewrite_links(links):
    """Inspect shows links as ``/child:/parent/alias``; create wants ``child:alias``."""
    out = []
    for link in links or []:
        if ":" in link:
            child, alias = link.split(":", 1)
            out.append("%s:%s" % (child.lstrip("/"), alias.rsplit("/", 1)[-1]))
        else:
            out.append(link.lstrip("/"))
    return out


def _bind_destination(bind):
    parts = bind.split(":")
    if len(parts) >= 2:
        return parts[1]
    return parts[0]


def anonymous_volume_binds(container):
    """Binds that hand the old container's anonymous volumes to the new one (their data is kept)."""
    host_config = container.get("HostConfig") or {}
    covered = set(_bind_destination(b) for b in host_config.get("Binds") or [])
    covered.update(m.get("Target") for m in host_config.get("Mounts") or [])
    binds = []
    for mount in container.get("Mounts") or []:
        if mount.get("Type") != "volume" or mount.get("Destination") in covered:
            continue
        name = mount.get("Name") or ""
        if not _HEX64.match(name):
            continue
        binds.append("%s:%s%s" % (name, mount["Destination"], "" if mount.get("RW", True) else ":ro"))
    return binds


def user_host_config(container):
    """The old container's HostConfig, made acceptable to /containers/create."""
    host_config = {k: copy.deepcopy(v) for k, v in (container.get("HostConfig") or {}).items() if not _empty(v)}
    if host_config.get("Links"):
        host_config["Links"] = rewrite_links(host_config["Links"])
    extra = anonymous_volume_binds(container)
    if extra:
        host_config["Binds"] = list(host_config.get("Binds") or []) + extra
    return host_config


def networking(container):
    """(EndpointsConfig for create, {network: endpoint config} to connect after create)."""
    host_config = container.get("HostConfig") or {}
    mode = host_config.get("NetworkMode") or "default"
    if mode in ("host", "none") or mode.startswith("container:"):
        return {}, {}
    networks = (container.get("NetworkSettings") or {}).get("Networks") or {}
    short_id = (container.get("Id") or "")[:12]
    endpoints = {}
    for net_name, endpoint in networks.items():
        endpoint = endpoint or {}
        clean = {}
        if endpoint.get("IPAMConfig"):
            clean["IPAMConfig"] = copy.deepcopy(endpoint["IPAMConfig"])
        if endpoint.get("Links"):
            clean["Links"] = list(endpoint["Links"])
        aliases = [a for a in endpoint.get("Aliases") or [] if a != short_id]
        if aliases and net_name != "bridge":
            clean["Aliases"] = aliases
        if endpoint.get("DriverOpts"):
            clean["DriverOpts"] = copy.deepcopy(endpoint["DriverOpts"])
        endpoints[net_name] = clean
    if mode in endpoints:
        primary = mode
    elif mode == "default" and "bridge" in endpoints:
        primary = "bridge"
    else:
        primary = None
    create = {primary: endpoints.pop(primary)} if primary else {}
    return create, endpoints


def run_spec(container, image):
    """The full user spec of a container: what a recreate needs, without the image defaults."""
    create, extra = networking(container)
    return {
        "config": user_config(container, image),
        "host_config": user_host_config(container),
        "networking_config": {"EndpointsConfig": create} if create else {},
        "extra_networks": extra,
    }


def create_body(spec, image_ref):
    body = copy.deepcopy(spec["config"])
    body["Image"] = image_ref
    body["HostConfig"] = copy.deepcopy(spec["host_config"])
    if spec.get("networking_config"):
        body["NetworkingConfig"] = copy.deepcopy(spec["networking_config"])
    return body


def ref_with_tag(current_ref, tag):
    """``lab/backend:v1`` + ``v2`` -> ``lab/backend:v2`` (a digest on the current reference is dropped)."""
    repo, _tag, _digest = split_image_ref(current_ref)
    return "%s:%s" % (repo, tag)


def image_ref(container, image):
    """The reference a container was created from; an id is mapped to the image's first tag if it has one."""
    ref = (container.get("Config") or {}).get("Image") or container.get("Image") or ""
    image_id = (image or {}).get("Id") or container.get("Image") or ""
    bare = ref.split(":", 1)[1] if ref.startswith("sha256:") else ref
    if ref.startswith("sha256:") or (bare and image_id.replace("sha256:", "").startswith(bare)):
        tags = [t for t in (image or {}).get("RepoTags") or [] if t != "<none>:<none>"]
        if tags:
            return tags[0]
    return ref


def health_status(container):
    health = (container.get("State") or {}).get("Health")
    return health.get("Status") if health else None


def describe_container(client, name):
    """What a container runs, as a release ledger entry wants it; None when there is no such container."""
    container = client.inspect_container(name)
    if container is None:
        return None
    image = client.inspect_image(container["Image"])
    return {
        "image": image_ref(container, image),
        "image_id": container["Image"],
        "digests": list((image or {}).get("RepoDigests") or []),
        "spec": run_spec(container, image),
        "running": bool((container.get("State") or {}).get("Running")),
    }
