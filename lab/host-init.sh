#!/bin/bash
# Entry point of every lab host container (image runbook-lab/host:bookworm; docker-init is PID 1).
# The lab driver (runner/lab.py) mounts this directory's files at /etc/runbook-lab and sets:
#   LAB_HOST  app1 | app2 | db | backup | lb
#   LAB_ADDR  the host's own loopback address (127.0.10.x)
# All hosts share the machine's network namespace, so every daemon binds to LAB_ADDR only.
# Safe to run again on an existing container. Writes /run/runbook-lab.ready when the host is up.
set -euo pipefail

host=${LAB_HOST:?LAB_HOST is not set}
addr=${LAB_ADDR:?LAB_ADDR is not set}
files=/etc/runbook-lab
rm -f /run/runbook-lab.ready
log() { printf '[%s] %s\n' "$host" "$*"; }

# --- sshd on ADDR:2222, root with the lab key only ---------------------------------------------------------
mkdir -p /run/sshd /root/.ssh
chmod 0755 /run/sshd
chmod 0700 /root/.ssh
[ -s /etc/ssh/ssh_host_ed25519_key ] || ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key
install -m 0600 "$files/authorized_keys" /root/.ssh/authorized_keys
cat >/etc/ssh/sshd_config.d/00-runbook-lab.conf <<CONF
ListenAddress $addr:2222
HostKey /etc/ssh/ssh_host_ed25519_key
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
UseDNS no
PidFile /run/sshd.pid
CONF
# Login shells see the same environment docker gave PID 1 (minus the lab's own variables).
printf 'LAB_HOST=%s\nLAB_ADDR=%s\n' "$host" "$addr" >/etc/environment
printf '%s\n' "$host" >/etc/runbook-lab-host

case "$host" in
app*)
    mkdir -p /var/lib/runbook/releases
    # This host's own Docker engine: a dockerd on the machine whose socket directory is mounted here.
    # (/var/run is /run: /var/run/docker.sock is what clients use by default)
    ln -sfn "/run/runbook-lab/$host/docker.sock" /run/docker.sock
    ;;
db)
    conf=/etc/postgresql/15/main
    mkdir -p "$conf/conf.d" /var/run/postgresql
    chown postgres:postgres /var/run/postgresql
    cat >"$conf/conf.d/runbook-lab.conf" <<CONF
listen_addresses = '$addr'
port = 5432
ssl = off
jit = off
unix_socket_directories = '/var/run/postgresql'
CONF
    if ! grep -q 'runbook-lab' "$conf/pg_hba.conf"; then
        printf '# runbook-lab: the machine and the other lab hosts reach PostgreSQL over loopback\n' >>"$conf/pg_hba.conf"
        printf 'host all all 127.0.0.0/8 scram-sha-256\n' >>"$conf/pg_hba.conf"
    fi
    pg_ctlcluster 15 main start
    for _ in $(seq 1 100); do
        runuser -u postgres -- pg_isready -q -h /var/run/postgresql && break
        sleep 0.1
    done
    if ! runuser -u postgres -- psql -tAq -h /var/run/postgresql -c "SELECT 1 FROM pg_roles WHERE rolname = 'lab'" | grep -q 1; then
        runuser -u postgres -- psql -q -v ON_ERROR_STOP=1 -h /var/run/postgresql \
            -c "CREATE ROLE lab LOGIN SUPERUSER PASSWORD 'lab'"
    fi
    if ! runuser -u postgres -- psql -tAq -h /var/run/postgresql -c "SELECT 1 FROM pg_database WHERE datname = 'shop'" | grep -q 1; then
        runuser -u postgres -- psql -q -v ON_ERROR_STOP=1 -h /var/run/postgresql -c "CREATE DATABASE shop OWNER lab"
        PGPASSWORD=lab psql -q -v ON_ERROR_STOP=1 -h "$addr" -U lab -d shop -f "$files/shop-seed.sql"
        log "seeded database shop"
    fi
    # redis (installed on every host) runs on db only, on its own address
    redis-server --bind "$addr" --port 6379 --daemonize yes --save '' --appendonly no \
        --logfile /var/log/redis/redis-server.log --dir /var/lib/redis
    ;;
lb)
    cat >/etc/nginx/conf.d/upstream-backend.conf <<CONF
# The app servers behind the lab load balancer (a blue/green switch rewrites this file and reloads nginx).
upstream backend {
    server 127.0.10.11:8080;
    server 127.0.10.12:8080;
}
CONF
    cat >/etc/nginx/conf.d/runbook-lab.conf <<CONF
server {
    listen $addr:8080;
    server_name lb;
    # maintenance mode (role maintenance_mode): while the page exists every request gets it with a 503
    error_page 503 /maintenance.html;
    location = /maintenance.html {
        root /var/www/maintenance;
        internal;
    }
    location / {
        if (-f /var/www/maintenance/maintenance.html) {
            return 503;
        }
        proxy_pass http://backend;
        proxy_set_header Host \$host;
        proxy_connect_timeout 2s;
    }
}
CONF
    mkdir -p /var/www/maintenance
    rm -f /etc/nginx/sites-enabled/default
    nginx -t -q
    nginx
    ;;
backup)
    mkdir -p /srv/backups
    chmod 0750 /srv/backups
    ;;
esac

/usr/sbin/sshd
touch /run/runbook-lab.ready
log "ready on $addr"
exec sleep infinity
