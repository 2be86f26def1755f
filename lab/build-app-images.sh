#!/bin/bash
# Build the fixture application's root filesystems: OUTDIR/backend-v1.tar (healthy) and OUTDIR/backend-v2.tar
# (health fails). Each holds busybox (sh, wget for the health check) and the static server from lab/app/server.c,
# with its version baked into /app/VERSION and /app/HEALTHY. The lab imports them as lab/backend:v1 and :v2.
# Needs a C compiler with static libc (gcc, libc6-dev) and busybox-static.
set -euo pipefail

outdir=${1:?usage: build-app-images.sh OUTDIR}
here=$(cd "$(dirname "$0")" && pwd)
busybox=$(command -v busybox || true)
[ -x /bin/busybox ] && busybox=/bin/busybox
# ldd fails on a static binary: that is the one we want (it runs in an image with no libc)
if [ -z "$busybox" ] || ldd "$busybox" >/dev/null 2>&1; then
    echo "a statically linked busybox is needed: apt-get install busybox-static" >&2
    exit 1
fi
cc=${CC:-cc}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$cc" -static -Os -s -Wall -Wextra -o "$work/server" "$here/app/server.c"

for spec in v1:ok v2:error; do
    version=${spec%%:*}
    healthy=${spec#*:}
    root=$work/$version
    mkdir -p "$root/bin" "$root/app" "$root/tmp" "$root/etc"
    cp "$busybox" "$root/bin/busybox"
    for applet in sh wget cat echo ls ps sleep env grep; do ln -s busybox "$root/bin/$applet"; done
    cp "$work/server" "$root/app/server"
    printf '%s\n' "$version" >"$root/app/VERSION"
    printf '%s\n' "$healthy" >"$root/app/HEALTHY"
    printf 'root:x:0:0:root:/:/bin/sh\n' >"$root/etc/passwd"
    printf 'root:x:0:\n' >"$root/etc/group"
    chmod 1777 "$root/tmp"
    # fixed timestamps and owners: the same recipe gives the same tarball
    tar --numeric-owner --owner=0 --group=0 --mtime=@0 --sort=name -C "$root" -cf "$outdir/backend-$version.tar.part" .
    mv "$outdir/backend-$version.tar.part" "$outdir/backend-$version.tar"
done
