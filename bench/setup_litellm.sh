#!/usr/bin/env bash
# Make (or reuse) bench/.venv-litellm, a venv holding only the LiteLLM proxy, for overhead.py.
#
# Why a separate venv: LiteLLM pins its own versions of aiohttp, pydantic, httpx and friends, and
# must not disturb the gateway's .venv. Why pinned: a benchmark compares against one known
# release, and "latest" is not taken blindly (LiteLLM had a compromised release on PyPI,
# v1.107.0). 1.106.2 is the newest whose dependencies resolve on the package index used here
# (later patch releases require a certifi newer than the index has); LITELLM_SPEC overrides it.
# Idempotent: a venv stamped with this spec (set once its proxy imported) is reused as it is.
# Usage: bench/setup_litellm.sh [PYTHON]
set -euo pipefail

LITELLM_SPEC="${LITELLM_SPEC:-litellm[proxy]==1.106.2}"
VENV="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/.venv-litellm"
STAMP="$VENV/.installed-$(echo "$LITELLM_SPEC" | tr -c 'A-Za-z0-9.=' '_')"

if [[ -f "$STAMP" && -x "$VENV/bin/litellm" ]]; then
    exit 0
fi
echo "==> installing $LITELLM_SPEC into $VENV" >&2
test -x "$VENV/bin/python" || "${1:-python3}" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check "$LITELLM_SPEC"
"$VENV/bin/python" -c 'import litellm.proxy.proxy_server'
rm -f "$VENV"/.installed-*
touch "$STAMP"
