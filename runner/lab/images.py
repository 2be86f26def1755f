"""The lab's images: the host image (debootstrap, then `docker import`) and the fixture app's lab/backend:v1 and
:v2, built once per recipe, imported into the main engine and loaded into each app host's engine."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

from runner.errors import LabError
from runner.lab.commands import run, run_streaming
from runner.lab.engines import connected
from runner.lab.layout import (
    APP_HOSTS,
    APP_IMAGE,
    APP_RECIPE,
    APP_VERSIONS,
    HOST_IMAGE,
    HOST_RECIPE,
    RECIPES_DIR,
    Progress,
    state_dir,
)
from runner.lab.preflight import need

_RECIPE_LABEL = "runbook.lab.recipe"


def recipe_hash(files: tuple[str, ...]) -> str:
    """Names an image's recipe: it changes when one of the recipe's files does (then the image is rebuilt)."""
    h = hashlib.sha256()
    for name in files:
        h.update(name.encode() + b"\0" + (RECIPES_DIR / name).read_bytes() + b"\0")
    return h.hexdigest()[:12]


def image_exists(client: Any, name: str) -> bool:
    return _image(client, name) is not None


def image_label(client: Any, name: str, key: str) -> str | None:
    img = _image(client, name)
    if img is None:
        return None
    labels = (img.attrs.get("Config") or {}).get("Labels") or {}  # the Docker API's JSON: absent or null
    value = labels.get(key)
    return str(value) if value is not None else None


def _image(client: Any, name: str) -> Any:
    import docker

    try:
        return client.images.get(name)
    except docker.errors.ImageNotFound:
        return None


def ensure_host_image(client: Any, progress: Progress) -> None:
    recipe = recipe_hash(HOST_RECIPE)
    if image_label(client, HOST_IMAGE, _RECIPE_LABEL) == recipe:
        return
    cache = state_dir() / "cache"
    tarball = cache / f"host-{recipe}.tar"
    if not tarball.exists():
        need("debootstrap", "debootstrap")
        progress(f"building the lab host image with debootstrap (once; a few minutes) -> {tarball}")
        run_streaming([str(RECIPES_DIR / "build-host-image.sh"), str(tarball)], "building the host image", progress)
        for old in cache.glob("host-*.tar"):
            if old != tarball:
                old.unlink()
    progress(f"importing {HOST_IMAGE}")
    changes = [
        'ENTRYPOINT ["/bin/bash", "/etc/runbook-lab/host-init.sh"]',
        "ENV LANG=C.UTF-8",
        f"LABEL {_RECIPE_LABEL}={recipe}",
    ]
    _import(client, tarball, HOST_IMAGE, changes)


def ensure_app_images(main: Any, progress: Progress) -> None:
    """lab/backend:v1 and :v2 of the current recipe in the main engine and in every app host's engine."""
    recipe = recipe_hash(APP_RECIPE)
    if any(image_label(main, f"{APP_IMAGE}:{v}", _RECIPE_LABEL) != recipe for v in APP_VERSIONS):
        outdir = _app_tarballs(recipe, progress)
        for v in APP_VERSIONS:
            changes = [
                'CMD ["/app/server"]',
                "WORKDIR /app",
                f"LABEL {_RECIPE_LABEL}={recipe}",
                f"LABEL org.opencontainers.image.version={v}",
                "LABEL org.opencontainers.image.title=lab-backend",
            ]
            _import(main, outdir / f"backend-{v}.tar", f"{APP_IMAGE}:{v}", changes)
    for name in APP_HOSTS:
        with connected(name) as client:
            _load_app_images(main, client, name, progress)


def _app_tarballs(recipe: str, progress: Progress) -> Path:
    """The directory holding backend-<version>.tar of this recipe, built if missing (older recipes' removed)."""
    outdir = state_dir() / "cache" / f"app-{recipe}"
    if all((outdir / f"backend-{v}.tar").exists() for v in APP_VERSIONS):
        return outdir
    need("cc", "gcc libc6-dev")
    need("busybox", "busybox-static")
    progress("building the fixture app images lab/backend:v1 and :v2")
    outdir.mkdir(parents=True, exist_ok=True)
    run([str(RECIPES_DIR / "build-app-images.sh"), str(outdir)], "building the fixture app")
    for old in (state_dir() / "cache").glob("app-*"):
        if old != outdir:
            shutil.rmtree(old, ignore_errors=True)
    return outdir


def _load_app_images(main: Any, client: Any, name: str, progress: Progress) -> None:
    """Copy each app image the app host's engine lacks (or holds another build of) from the main engine."""
    for v in APP_VERSIONS:
        ref = f"{APP_IMAGE}:{v}"
        want = main.images.get(ref).id
        try:
            have = client.images.get(ref).id
        except Exception:
            have = None
        if have == want:
            continue
        progress(f"loading {ref} into {name}'s engine")
        for msg in client.api.load_image(main.api.get_image(ref)):
            if isinstance(msg, dict) and msg.get("error"):
                raise LabError(f"loading {ref} into {name}'s engine failed: {msg['error']}")


def _import(client: Any, tarball: Path, name: str, changes: list[str]) -> None:
    repo, tag = name.rsplit(":", 1)
    try:
        out = client.api.import_image(src=str(tarball), repository=repo, tag=tag, changes=changes)
    except Exception as exc:
        raise LabError(f"docker import of {tarball} as {name} failed: {exc}") from None
    if "errorDetail" in str(out):
        raise LabError(f"docker import of {tarball} as {name} failed: {str(out).strip()[:300]}")
