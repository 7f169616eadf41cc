#!/usr/bin/env bash
# Make (or reuse) bench/.venv-litellm, a venv holding only the LiteLLM proxy.
#
# Why a separate venv: LiteLLM pins its own versions of aiohttp, pydantic, httpx and friends, and
# must not disturb the gateway's .venv. Why pinned: a benchmark compares against one known
# release, and "latest" is not taken blindly (LiteLLM had a compromised release on PyPI,
# v1.107.0). 1.106.2 is the newest whose dependencies resolve on the package index used here
# (later patch releases require a certifi newer than the index has); LITELLM_SPEC overrides it.
# Idempotent: a venv whose stamp matches and whose proxy imports is reused as it is.
# Usage: bench/setup_litellm.sh [PYTHON]   (prints the venv's python path on its last line)
set -euo pipefail

LITELLM_SPEC="${LITELLM_SPEC:-litellm[proxy]==1.106.2}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$HERE/.venv-litellm"
PY="${1:-python3}"
STAMP="$VENV/.installed-$(echo "$LITELLM_SPEC" | tr -c 'A-Za-z0-9.=' '_')"

if [[ -f "$STAMP" ]] && "$VENV/bin/python" -c 'import litellm.proxy.proxy_server' 2>/dev/null; then
    echo "$VENV/bin/python"
    exit 0
fi
echo "==> installing $LITELLM_SPEC into $VENV (once)" >&2
test -x "$VENV/bin/python" || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check "$LITELLM_SPEC" >&2
"$VENV/bin/python" -c 'import litellm.proxy.proxy_server' >&2
rm -f "$VENV"/.installed-*
touch "$STAMP"
echo "$VENV/bin/python"
