#!/bin/bash
# Build the lab host root filesystem (Debian bookworm) and pack it as a tarball for `docker import`.
#
#   lab/build-host-image.sh OUT.tar
#
# The Debian mirror is read from this machine's apt sources at run time (override: LAB_DEBIAN_MIRROR).
# Needs root, debootstrap and network access to that mirror. Takes a few minutes; the lab caches the result.
set -euo pipefail

out=${1:?usage: build-host-image.sh OUT.tar}
suite=bookworm
packages=(
    python3 python3-requests openssh-server postgresql-15 postgresql-client-15 nginx redis-server
    rsync curl ca-certificates sudo procps iproute2 less
)

log() { printf '[host-image] %s\n' "$*" >&2; }

# First "deb" URI for the Debian archive (not the security archive) in the apt sources.
detect_mirror() {
    local f uri
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -r "$f" ] || continue
        # deb822: blocks separated by blank lines; take a URIs line of a block whose Suites has $suite
        uri=$(awk -v suite="$suite" '
            BEGIN { RS=""; FS="\n" }
            {
                uris=""; suites=""; types=""
                for (i = 1; i <= NF; i++) {
                    if ($i ~ /^URIs:/)   { uris=$i;   sub(/^URIs:[ \t]*/, "", uris) }
                    if ($i ~ /^Suites:/) { suites=$i; sub(/^Suites:[ \t]*/, "", suites) }
                    if ($i ~ /^Types:/)  { types=$i }
                }
                n = split(suites, s, /[ \t]+/)
                for (j = 1; j <= n; j++) if (s[j] == suite && types ~ /deb( |$)/) {
                    split(uris, u, /[ \t]+/); print u[1]; exit
                }
            }' "$f")
        if [ -n "$uri" ]; then echo "$uri"; return; fi
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -r "$f" ] || continue
        uri=$(awk -v suite="$suite" '
            $1 == "deb" {
                i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
                if ($(i+1) == suite) { print $i; exit }
            }' "$f")
        if [ -n "$uri" ]; then echo "$uri"; return; fi
    done
}

mirror=${LAB_DEBIAN_MIRROR:-$(detect_mirror)}
if [ -z "$mirror" ]; then
    echo "no Debian $suite mirror found in /etc/apt/sources.list*; set LAB_DEBIAN_MIRROR" >&2
    exit 1
fi

work=$(mktemp -d "$(dirname "$out")/host-rootfs.XXXXXX")
root=$work/rootfs
cleanup() {
    for m in "$root/proc" "$root/sys" "$root/dev/pts"; do
        mountpoint -q "$m" 2>/dev/null && umount -l "$m" || true
    done
    rm -rf "$work"
}
trap cleanup EXIT

log "debootstrap --variant=minbase $suite from $mirror (a few minutes)"
debootstrap --variant=minbase "$suite" "$root" "$mirror" >"$work/debootstrap.log" 2>&1 || {
    tail -n 30 "$work/debootstrap.log" >&2
    exit 1
}

log "installing ${packages[*]}"
security=${mirror%/debian}/debian-security
cat >"$root/etc/apt/sources.list" <<SOURCES
deb $mirror $suite main
deb $mirror $suite-updates main
SOURCES
if [ -z "${LAB_NO_SECURITY:-}" ] && grep -rqs "debian-security" /etc/apt/sources.list /etc/apt/sources.list.d/; then
    echo "deb $security $suite-security main" >>"$root/etc/apt/sources.list"
fi
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod 755 "$root/usr/sbin/policy-rc.d"
mount -t proc proc "$root/proc"
export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8
chroot "$root" apt-get -q update >"$work/apt.log" 2>&1 || { tail -n 30 "$work/apt.log" >&2; exit 1; }
chroot "$root" apt-get -q -y --no-install-recommends install "${packages[@]}" >>"$work/apt.log" 2>&1 || {
    tail -n 30 "$work/apt.log" >&2
    exit 1
}
chroot "$root" apt-get clean
umount "$root/proc"

log "trimming"
rm -f "$root/usr/sbin/policy-rc.d"
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/usr/share/doc/* "$root"/usr/share/man/* \
    "$root"/usr/share/info/* "$root"/var/log/*.log "$root"/var/log/apt/*
# host keys are generated per host at first start (lab/host-init.sh)
rm -f "$root"/etc/ssh/ssh_host_*
# no daemon may listen on the default (0.0.0.0) addresses: the host init writes the real configs
rm -f "$root/etc/nginx/sites-enabled/default"
mkdir -p "$root/var/lib/runbook/releases" "$root/srv/backups" "$root/root/.ssh"
chmod 700 "$root/root/.ssh"
printf 'lab-host bookworm\n' >"$root/etc/runbook-lab-image"

log "packing $(du -sh "$root" | cut -f1) into $out"
tar --numeric-owner --one-file-system -C "$root" -cf "$out.part" .
mv "$out.part" "$out"
log "done"
