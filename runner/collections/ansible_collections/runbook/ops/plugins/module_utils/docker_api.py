# -*- coding: utf-8 -*-
# Copyright: runbook-runner maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""A minimal Docker Engine API client on the Python standard library.

The managed hosts have python3 only (no docker SDK), so this speaks HTTP/1.1 over the engine's unix socket
(or plain TCP for ``tcp://`` hosts) with ``http.client``. Only what the runbook.ops modules need is here.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import http.client
import json
import socket
import struct
from urllib.parse import quote, urlencode, urlsplit

DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
# The API version the modules are written against (Docker 20.10 speaks 1.41; newer engines accept it).
PINNED_API_VERSION = (1, 41)


class DockerError(Exception):
    """An engine error, with the HTTP status when the engine answered."""

    def __init__(self, message, status=None):
        super().__init__(message)
        self.status = status
        self.message = message


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        super().__init__("localhost", timeout=timeout)
        self._socket_path = path

    def connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._socket_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def split_image_ref(ref):
    """Split ``registry:5000/repo/name:tag@sha256:...`` into (repository, tag, digest); missing parts are None."""
    digest = None
    if "@" in ref:
        ref, digest = ref.split("@", 1)
    tag = None
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        ref, tag = ref[:colon], ref[colon + 1 :]
    return ref, tag, digest


def _version_tuple(text):
    try:
        return tuple(int(p) for p in str(text).split(".")[:2])
    except ValueError:
        return PINNED_API_VERSION


class DockerClient:
    """Small synchronous client: one HTTP connection per request (the engine is local, requests are few)."""

    def __init__(self, docker_host=DEFAULT_DOCKER_HOST, timeout=60):
        self.docker_host = docker_host or DEFAULT_DOCKER_HOST
        self.timeout = timeout
        parts = urlsplit(self.docker_host)
        if parts.scheme == "unix":
            self._unix_path = parts.path
            self._tcp = None
        elif parts.scheme in ("tcp", "http"):
            self._unix_path = None
            self._tcp = (parts.hostname, parts.port or 2375)
        else:
            raise DockerError("unsupported docker_host %r (use unix:///path or tcp://host:port)" % docker_host)
        self._prefix = None

    # -- transport -----------------------------------------------------------------------------------------
    def _connection(self, timeout):
        if self._unix_path is not None:
            return _UnixHTTPConnection(self._unix_path, timeout)
        return http.client.HTTPConnection(self._tcp[0], self._tcp[1], timeout=timeout)

    def _raw(self, method, path, params=None, body=None, timeout=None):
        if params:
            path = path + "?" + urlencode({k: v for k, v in params.items() if v is not None})
        headers = {"Host": "docker"}
        payload = None
        if body is not None:
            payload = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        conn = self._connection(timeout or self.timeout)
        try:
            conn.request(method, path, body=payload, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, data
        except (OSError, http.client.HTTPException) as exc:
            raise DockerError("cannot talk to the Docker engine at %s: %s" % (self.docker_host, exc)) from exc
        finally:
            conn.close()

    def _api_prefix(self):
        if self._prefix is None:
            status, data = self._raw("GET", "/version")
            if status != 200:
                raise DockerError("Docker engine at %s answered %s to /version" % (self.docker_host, status), status)
            server = _version_tuple(json.loads(data.decode("utf-8")).get("ApiVersion", "1.41"))
            use = min(server, PINNED_API_VERSION)
            self._prefix = "/v%d.%d" % use
        return self._prefix

    def request(self, method, path, params=None, body=None, ok=(200, 201, 204, 304), timeout=None, raw=False):
        status, data = self._raw(method, self._api_prefix() + path, params=params, body=body, timeout=timeout)
        if status not in ok:
            message = data.decode("utf-8", "replace").strip()
            try:
                message = json.loads(message).get("message", message)
            except (ValueError, AttributeError):
                pass
            raise DockerError("%s %s: %s (HTTP %s)" % (method, path.split("?")[0], message, status), status)
        if raw:
            return data
        if not data:
            return None
        try:
            return json.loads(data.decode("utf-8"))
        except ValueError:
            return data.decode("utf-8", "replace")

    # -- reads ---------------------------------------------------------------------------------------------
    def version(self):
        return self.request("GET", "/version")

    def _found(self, path):
        """GET path; None when the engine answers 404 (no such object)."""
        try:
            return self.request("GET", path)
        except DockerError as exc:
            if exc.status == 404:
                return None
            raise

    def inspect_container(self, name):
        """The container's inspect document, or None when there is no such container."""
        return self._found("/containers/%s/json" % quote(name, safe=""))

    def inspect_image(self, ref):
        """The image's inspect document, or None when the engine does not have it."""
        return self._found("/images/%s/json" % quote(ref, safe=":@/"))

    def logs(self, container_id, tail=20):
        """The last lines of a container's stdout/stderr (demultiplexed when the container has no TTY)."""
        try:
            data = self.request(
                "GET",
                "/containers/%s/logs" % quote(container_id, safe=""),
                params={"stdout": 1, "stderr": 1, "tail": tail},
                raw=True,
            )
        except DockerError:
            return ""
        return demultiplex(data)

    def logs_text(self, container_id, since=None, tail="all"):
        """A container's stdout/stderr since an epoch second (all of it when None), or its last `tail` lines;
        raises DockerError when the engine cannot give them."""
        data = self.request(
            "GET",
            "/containers/%s/logs" % quote(container_id, safe=""),
            params={"stdout": 1, "stderr": 1, "since": int(since) if since is not None else None, "tail": tail},
            raw=True,
        )
        return demultiplex(data)

    # -- writes --------------------------------------------------------------------------------------------
    def create_container(self, name, spec):
        created = self.request("POST", "/containers/create", params={"name": name}, body=spec)
        return created["Id"]

    def connect_network(self, network, container_id, endpoint_config):
        self.request(
            "POST",
            "/networks/%s/connect" % quote(network, safe=""),
            body={"Container": container_id, "EndpointConfig": endpoint_config or {}},
        )

    def start(self, container_id):
        self.request("POST", "/containers/%s/start" % quote(container_id, safe=""))

    def stop(self, container_id, timeout=None):
        wait = (timeout if timeout is not None else 10) + 30
        self.request(
            "POST", "/containers/%s/stop" % quote(container_id, safe=""), params={"t": timeout}, timeout=wait
        )

    def rename(self, container_id, new_name):
        self.request("POST", "/containers/%s/rename" % quote(container_id, safe=""), params={"name": new_name})

    def remove(self, container_id, force=False):
        self.request(
            "DELETE",
            "/containers/%s" % quote(container_id, safe=""),
            params={"force": "1" if force else "0", "v": "0"},
            ok=(200, 204, 404),
        )

    def pull(self, ref, timeout=300):
        """Pull an image; raises DockerError with the engine's message when the pull fails."""
        repo, tag, digest = split_image_ref(ref)
        params = {"fromImage": repo, "tag": digest or tag or "latest"}
        data = self.request("POST", "/images/create", params=params, raw=True, timeout=timeout)
        for line in data.decode("utf-8", "replace").splitlines():
            line = line.strip()
            if not line:
                continue
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict) and event.get("error"):
                raise DockerError("pull of %s failed: %s" % (ref, event.get("error")))


def demultiplex(data):
    """Decode the engine's multiplexed log stream (8-byte frame headers); plain text is returned as is."""
    out = []
    pos = 0
    if len(data) >= 8 and data[0] in (0, 1, 2) and data[1:4] == b"\x00\x00\x00":
        while pos + 8 <= len(data):
            _stream, size = struct.unpack(">BxxxL", data[pos : pos + 8])
            out.append(data[pos + 8 : pos + 8 + size])
            pos += 8 + size
        return b"".join(out).decode("utf-8", "replace")
    return data.decode("utf-8", "replace")
