#!/usr/bin/env bash
# Regenerates proto/aether_v1.fds (the Aether gateway wire schema) from the pinned Python SDK
# scitrera-aether-client==0.2.3 (PyPI; the schema is upstream's, Apache-2.0, scitrera/aether).
# The SDK wheel ships no .proto text, only the descriptor inside its generated aether_pb2 module,
# so we dump that. The venv is target/aether-sdk-venv (created here if missing; .ci/run makes the
# same one). tests/aether_schema.rs re-dumps and fails when the committed file drifts.
#   scripts/regen-aether-fds.sh           write proto/aether_v1.fds
#   scripts/regen-aether-fds.sh --check   exit 1 if the committed file differs from a fresh dump
set -euo pipefail
cd "$(dirname "$0")/.."
sdk_version="0.2.3"
venv="$PWD/target/aether-sdk-venv"
out="proto/aether_v1.fds"
if ! "$venv/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('scitrera-aether-client') != '$sdk_version')" 2>/dev/null; then
  mkdir -p target
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "scitrera-aether-client==$sdk_version"
fi
if [ "${1:-}" = "--check" ]; then
  tmp="$(mktemp)"
  trap 'rm -f "$tmp"' EXIT
  "$venv/bin/python" scripts/dump-aether-fds.py "$tmp"
  if ! cmp -s "$tmp" "$out"; then
    echo "$out differs from the descriptor of scitrera-aether-client==$sdk_version; run scripts/regen-aether-fds.sh" >&2
    exit 1
  fi
  echo "$out matches scitrera-aether-client==$sdk_version"
else
  "$venv/bin/python" scripts/dump-aether-fds.py "$out"
  echo "wrote $out ($(wc -c < "$out") bytes) from scitrera-aether-client==$sdk_version"
fi
