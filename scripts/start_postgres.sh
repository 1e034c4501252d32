#!/usr/bin/env bash
# Start a private PostgreSQL cluster on loopback and print its URL (one line on stdout).
#
#   url=$(scripts/start_postgres.sh [--dir DIR] [--fast])   # start; DIR default: a new temp dir
#   scripts/start_postgres.sh --stop DIR                     # stop it and remove DIR
#
# Installs Debian's `postgresql` package when no server binaries are found (needs root and the
# Debian archive). The cluster listens on 127.0.0.1 at a free port with trust auth, keeps its
# socket in DIR, and has a database named `star`. As root the server runs as the `postgres` user
# (PostgreSQL refuses to run as root). --fast turns fsync off (tests only: not crash-safe).
set -euo pipefail

log() { echo "start_postgres: $*" >&2; }

dir=""
stop=0
fast=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --dir) dir="$2"; shift 2 ;;
        --stop) stop=1; dir="${2:-}"; shift; [[ $# -gt 0 ]] && shift ;;
        --fast) fast=1; shift ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) log "unknown argument $1"; exit 2 ;;
    esac
done

find_bindir() {
    local d
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    if [[ -n "$d" && -x "$d/pg_ctl" ]]; then echo "$d"; return; fi
    if command -v pg_ctl >/dev/null 2>&1; then dirname "$(command -v pg_ctl)"; fi
}

as_owner() {
    if [[ $(id -u) -eq 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

bindir=$(find_bindir)
if [[ -z "$bindir" ]]; then
    if [[ $(id -u) -ne 0 ]]; then
        log "PostgreSQL is not installed and this is not root: apt-get install postgresql"
        exit 1
    fi
    log "installing Debian's postgresql package"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq postgresql >&2
    bindir=$(find_bindir)
    [[ -n "$bindir" ]] || { log "postgresql installed but pg_ctl not found"; exit 1; }
fi

if [[ $stop -eq 1 ]]; then
    [[ -n "$dir" && -d "$dir" ]] || { log "--stop needs the cluster directory"; exit 2; }
    if [[ -f "$dir/data/PG_VERSION" ]]; then
        as_owner "$bindir/pg_ctl" -D "$dir/data" -m fast -w stop >&2 || true
    fi
    rm -rf "$dir"
    exit 0
fi

if [[ -z "$dir" ]]; then
    dir=$(mktemp -d /tmp/star-pg.XXXXXX)
fi
mkdir -p "$dir"
chmod 0755 "$dir"
if [[ $(id -u) -eq 0 ]]; then
    id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql postgres
    chown postgres "$dir"
fi

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

if [[ ! -f "$dir/data/PG_VERSION" ]]; then
    as_owner "$bindir/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --no-locale >&2
fi
opts="-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$dir"
opts="$opts -c max_connections=300 -c shared_buffers=128MB"
if [[ $fast -eq 1 ]]; then
    opts="$opts -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
fi
as_owner "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -o "$opts" -w -t 60 start >&2 || {
    log "the server did not start; its log:"
    cat "$dir/server.log" >&2 || true
    exit 1
}
as_owner "$bindir/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -qAt \
    -c "CREATE DATABASE star" >&2
echo "$port" > "$dir/port"
log "cluster in $dir on 127.0.0.1:$port; stop with: $0 --stop $dir"
echo "postgresql://postgres@127.0.0.1:$port/star"
