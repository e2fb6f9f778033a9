#!/usr/bin/env bash
# HTTP benchmark (not a test): a 1 GiB upload and download over loopback with curl against
# `satchel serve` (scanning off), next to nginx (dav_methods PUT) serving/accepting the same file
# on the same disk in the same run. Satchel answers an upload only after its bytes are fsynced,
# so nginx's PUT is timed together with a `sync` of the written file.
# Usage: scripts/bench-http.sh [SIZE_MIB]   (installs nginx from Debian if missing, as root)
set -euo pipefail
cd "$(dirname "$0")/.."
MIB=${1:-1024}
DIR=$(pwd)/target/bench-http
rm -rf "$DIR"; mkdir -p "$DIR"/{satchel,nginx/root,nginx/tmp}
command -v nginx >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nginx >/dev/null
cargo build --release -q -p satchel-cli
BIN=./target/release/satchel
head -c $((MIB * 1048576)) /dev/urandom > "$DIR/big.bin"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
rate() { awk -v s="$1" -v m="$MIB" 'BEGIN {printf "%.0f MiB/s", m / s}'; }

# --- satchel -------------------------------------------------------------------------------------
SP=$(free_port)
export APP_DATA_DIR=$DIR/satchel CLAMAV_SERVICE_ENABLED=false MAX_FILE_SIZE_MB=$((MIB + 16)) \
       BIND_ADDRESS=127.0.0.1:$SP GC_INTERVAL_S=0 RUST_LOG=warn
$BIN serve 2> "$DIR/satchel.log" & SPID=$!
trap 'kill $SPID 2>/dev/null; [ -n "${NPID:-}" ] && kill $NPID 2>/dev/null; true' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$SP/healthz" >/dev/null && break; sleep 0.1; done
TOKEN=$($BIN token --user bench)
idle=$(awk '/VmRSS/ {print $2}' /proc/$SPID/status)
up=(); down=()
for i in 1 2 3; do
  t=$(curl -sf -o "$DIR/up.json" -w '%{time_total}' -X POST -T "$DIR/big.bin" \
        -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/octet-stream' \
        "http://127.0.0.1:$SP/v1/files?filename=big$i.bin")
  up+=("$t")
  id=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$DIR/up.json")
  t=$(curl -sf -o /dev/null -w '%{time_total}' -H "Authorization: Bearer $TOKEN" \
        "http://127.0.0.1:$SP/v1/files/$id/content")
  down+=("$t")
done
peak=$(awk '/VmHWM/ {print $2}' /proc/$SPID/status)
s_up=$(printf '%s\n' "${up[@]}" | median); s_down=$(printf '%s\n' "${down[@]}" | median)

# --- nginx ---------------------------------------------------------------------------------------
NP=$(free_port)
# As root, nginx's workers would drop to an unprivileged user that cannot write here.
USER_LINE=""; [ "$(id -u)" = 0 ] && USER_LINE="user root;"
cat > "$DIR/nginx/nginx.conf" <<CONF
$USER_LINE
worker_processes 1;
daemon off;
pid $DIR/nginx/nginx.pid;
error_log $DIR/nginx/error.log;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path $DIR/nginx/tmp;
  server {
    listen 127.0.0.1:$NP;
    root $DIR/nginx/root;
    client_max_body_size 0;
    location / { dav_methods PUT; create_full_put_path on; }
  }
}
CONF
nginx -c "$DIR/nginx/nginx.conf" & NPID=$!
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$NP/" && break; sleep 0.1; done
nup=(); ndown=()
for i in 1 2 3; do
  start=$(date +%s.%N)
  curl -sf -o /dev/null -T "$DIR/big.bin" "http://127.0.0.1:$NP/big$i.bin"
  sync "$DIR/nginx/root/big$i.bin"
  nup+=("$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN {print b - a}')")
  ndown+=("$(curl -sf -o /dev/null -w '%{time_total}' "http://127.0.0.1:$NP/big$i.bin")")
done
n_up=$(printf '%s\n' "${nup[@]}" | median); n_down=$(printf '%s\n' "${ndown[@]}" | median)

echo "HTTP over loopback, $MIB MiB, median of 3 (scanning off):"
echo "  upload   satchel $s_up s ($(rate "$s_up"))   nginx PUT + sync $n_up s ($(rate "$n_up"))   satchel/nginx throughput $(awk -v a="$n_up" -v b="$s_up" 'BEGIN {printf "%.2f", a / b}')"
echo "  download satchel $s_down s ($(rate "$s_down"))   nginx GET $n_down s ($(rate "$n_down"))   satchel/nginx throughput $(awk -v a="$n_down" -v b="$s_down" 'BEGIN {printf "%.2f", a / b}')"
echo "  satchel serve RSS: idle $((idle / 1024)) MiB, peak $((peak / 1024)) MiB (+$(((peak - idle) / 1024)) MiB)"
