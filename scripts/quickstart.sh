#!/usr/bin/env bash
# Runs Satchel on the embedded default (SQLite + local disk under ./data) with virus scanning on:
# a local clamd is started too (the Debian package is installed if missing).
#
# Signatures: the system database (/var/lib/clamav) if present, else what `freshclam` can fetch;
# on a machine without internet neither exists, and clamd then runs with a one-line test
# database that only detects the EICAR test file. That is for evaluation only and is announced
# loudly. Any other environment variable of the configuration (README) is passed through.
set -euo pipefail
cd "$(dirname "$0")/.."

export APP_DATA_DIR=${APP_DATA_DIR:-./data}
export CLAMAV_SERVICE_HOST=${CLAMAV_SERVICE_HOST:-127.0.0.1}
export CLAMAV_SERVICE_PORT=${CLAMAV_SERVICE_PORT:-3310}
MAX_MB=${MAX_FILE_SIZE_MB:-100}
CLAM_DIR=$APP_DATA_DIR/clamav
mkdir -p "$CLAM_DIR"
CLAM_DIR=$(cd "$CLAM_DIR" && pwd)

say() { echo "quickstart: $*" >&2; }
loud() {
  echo "################################################################################" >&2
  for line in "$@"; do echo "## $line" >&2; done
  echo "################################################################################" >&2
}

clamd_answers() {
  local pong
  pong=$(timeout 5 bash -c 'exec 3<>"/dev/tcp/$1/$2"; printf "zPING\0" >&3; head -c 4 <&3' _ \
    "$CLAMAV_SERVICE_HOST" "$CLAMAV_SERVICE_PORT" 2>/dev/null || true)
  [ "$pong" = PONG ]
}

install_clamav() {
  command -v clamd >/dev/null || [ -x /usr/sbin/clamd ] && return 0
  [ "$(id -u)" = 0 ] || { say "clamd is missing: apt-get install clamav-daemon (as root)"; exit 1; }
  say "installing clamav-daemon"
  export DEBIAN_FRONTEND=noninteractive
  # Keep the package from starting the stock clamd/freshclam services; we run our own clamd.
  local policy=/usr/sbin/policy-rc.d ours=0
  if [ ! -e $policy ]; then printf '#!/bin/sh\nexit 101\n' > $policy; chmod +x $policy; ours=1; fi
  apt-get install -y -q --no-install-recommends clamav-daemon clamav-freshclam >/dev/null \
    || { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends clamav-daemon clamav-freshclam >/dev/null; }
  if [ $ours = 1 ]; then rm -f $policy; fi
}

has_signatures() { compgen -G "$1/*.c[lv]d" >/dev/null; }

pick_database() {
  if has_signatures /var/lib/clamav; then echo /var/lib/clamav; return; fi
  mkdir -p "$CLAM_DIR/db"
  if has_signatures "$CLAM_DIR/db"; then echo "$CLAM_DIR/db"; return; fi
  say "no ClamAV signature database; trying freshclam (needs the internet)"
  if command -v freshclam >/dev/null && timeout 120 freshclam --quiet --datadir="$CLAM_DIR/db" \
       --config-file=/etc/clamav/freshclam.conf >&2 2>/dev/null && has_signatures "$CLAM_DIR/db"; then
    echo "$CLAM_DIR/db"; return
  fi
  loud "NO CLAMAV SIGNATURE DATABASE: freshclam could not fetch one." \
       "clamd runs with a TEST signature that only detects the EICAR test file." \
       "This is for evaluation only: real malware will NOT be detected." \
       "Production: run freshclam (or mirror the database) into /var/lib/clamav."
  mkdir -p "$CLAM_DIR/testdb"
  printf '%s\n' 'Eicar-Test-Signature:0:*:58354f2150254041505b345c505a58353428505e2937434329377d2445494341522d5354414e444152442d414e544956495255532d544553542d46494c452124482b482a' \
    > "$CLAM_DIR/testdb/test-eicar.ndb"
  echo "$CLAM_DIR/testdb"
}

CLAMD_PID=
cleanup() { [ -n "$CLAMD_PID" ] && kill "$CLAMD_PID" 2>/dev/null || true; }
trap cleanup EXIT INT TERM

if [ "${CLAMAV_SERVICE_ENABLED:-true}" = false ]; then
  say "scanning disabled by CLAMAV_SERVICE_ENABLED=false"
elif clamd_answers; then
  say "using the clamd already answering on $CLAMAV_SERVICE_HOST:$CLAMAV_SERVICE_PORT"
else
  install_clamav
  db=$(pick_database)
  # StreamMaxLength must be at least max_file_size_mb; MaxFileSize/MaxScanSize at least that
  # too, or clamd answers OK without scanning the rest (AlertExceedsMax reports it instead).
  limit=$((MAX_MB + 1))
  mkdir -p "$CLAM_DIR/tmp"
  cat > "$CLAM_DIR/clamd.conf" <<CONF
Foreground true
DatabaseDirectory $db
TemporaryDirectory $CLAM_DIR/tmp
TCPSocket $CLAMAV_SERVICE_PORT
TCPAddr $CLAMAV_SERVICE_HOST
LogFile $CLAM_DIR/clamd.log
StreamMaxLength ${limit}M
MaxFileSize ${limit}M
MaxScanSize $((limit * 2))M
AlertExceedsMax true
SelfCheck 3600
CONF
  say "starting clamd on $CLAMAV_SERVICE_HOST:$CLAMAV_SERVICE_PORT (database $db)"
  "$(command -v clamd || echo /usr/sbin/clamd)" -c "$CLAM_DIR/clamd.conf" >"$CLAM_DIR/clamd.out" 2>&1 &
  CLAMD_PID=$!
  # A full database takes a while to load.
  for _ in $(seq 600); do clamd_answers && break; kill -0 $CLAMD_PID 2>/dev/null || break; sleep 0.5; done
  clamd_answers || { tail -n 20 "$CLAM_DIR/clamd.out" >&2; say "clamd did not start"; exit 1; }
fi

say "building satchel (release; the first build takes a few minutes)"
cargo build --release -q -p satchel-cli
say "serving on http://${BIND_ADDRESS:-127.0.0.1:8080}  (data in $APP_DATA_DIR; Ctrl-C stops)"
./target/release/satchel serve "$@"
