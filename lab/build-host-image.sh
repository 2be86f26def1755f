#!/bin/bash
# Build the lab host root filesystem (Debian bookworm) and pack it as a tarball for `docker import`.
#
#   lab/build-host-image.sh OUT.tar
#   lab/build-host-image.sh --print-mirror     (show the mirrors it would use, and exit)
#
# The Debian mirror is read from this machine's apt sources at run time ($LAB_APT_DIR, default /etc/apt;
# override with LAB_DEBIAN_MIRROR and LAB_DEBIAN_SECURITY_MIRROR). Needs root, debootstrap and access to that
# mirror. Takes a minute or two; the lab caches the result (runner/lab.py).
set -euo pipefail

out=${1:?usage: build-host-image.sh OUT.tar | --print-mirror}
suite=bookworm
apt_dir=${LAB_APT_DIR:-/etc/apt}
packages=(
    python3 python3-requests openssh-server postgresql-15 postgresql-client-15 nginx redis-server
    rsync curl ca-certificates sudo procps iproute2 less
    docker-compose prometheus python3-psycopg2
)

log() { printf '[host-image] %s\n' "$*" >&2; }

# First "deb" URI in the apt sources that serves suite $1 (bookworm, bookworm-security).
detect_mirror() {
    local suite=$1 f uri
    for f in "$apt_dir"/sources.list.d/*.sources; do
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
    for f in "$apt_dir"/sources.list "$apt_dir"/sources.list.d/*.list; do
        [ -r "$f" ] || continue
        uri=$(awk -v suite="$suite" '
            $1 == "deb" {
                i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
                if ($(i+1) == suite) { print $i; exit }
            }' "$f")
        if [ -n "$uri" ]; then echo "$uri"; return; fi
    done
}

mirror=${LAB_DEBIAN_MIRROR:-$(detect_mirror "$suite")}
security=${LAB_DEBIAN_SECURITY_MIRROR:-$(detect_mirror "$suite-security")}
if [ -z "$mirror" ]; then
    echo "no Debian $suite mirror found in $apt_dir/sources.list*; set LAB_DEBIAN_MIRROR" >&2
    exit 1
fi
if [ "$out" = "--print-mirror" ]; then
    printf 'mirror %s\nsecurity %s\n' "$mirror" "${security:-none}"
    exit 0
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
cat >"$root/etc/apt/sources.list" <<SOURCES
deb $mirror $suite main
deb $mirror $suite-updates main
SOURCES
if [ -n "$security" ]; then
    echo "deb $security $suite-security main" >>"$root/etc/apt/sources.list"
fi
# no documentation, manual pages or translations: the image stays smaller and builds faster
cat >"$root/etc/dpkg/dpkg.cfg.d/runbook-lab-nodoc" <<'DPKG'
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
path-include=/usr/share/locale/locale.alias
path-exclude=/usr/share/lintian/*
DPKG
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
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/log/*.log "$root"/var/log/apt/*
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
