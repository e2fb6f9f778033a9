#!/usr/bin/env bash
# The whole test suite, as CI runs it: starts clamd, PostgreSQL, fake-gcs-server and moto (S3)
# on 127.0.0.1 (installing what is missing), runs formatting, lints and every test (both
# catalogs, every storage backend, real clamd), and stops the services. Usage: scripts/test.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."

export SVC_DIR=${SVC_DIR:-${TMPDIR:-/tmp}/satchel-ci-services}
export CLAMD_PORT=${CLAMD_PORT:-23310} PG_PORT=${PG_PORT:-25432} GCS_PORT=${GCS_PORT:-24443} S3_PORT=${S3_PORT:-25000}
bash scripts/services.sh start
trap 'bash scripts/services.sh stop' EXIT
# shellcheck disable=SC1091
source "$SVC_DIR/env"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -q -- -D warnings
echo "== cargo test (SQLite and PostgreSQL, real clamd)"
cargo test --workspace --no-fail-fast "$@"
