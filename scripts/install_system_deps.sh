#!/usr/bin/env bash
# System packages the sandboxes need (Debian/Ubuntu, run as root). Idempotent: installs only
# what is missing, so CI and developers can run it on every start.
#   bubblewrap  -- the local sandbox backend (amr_dagster/sandbox/bubblewrap.py)
#   python3     -- the interpreter that runs inside the local sandbox (/usr/bin/python3)
set -euo pipefail

packages=(bubblewrap python3)

missing=()
for pkg in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done

if ((${#missing[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}"
fi

# The unprivileged user the local sandbox runs as (bwrap run by root maps to root inside).
if ! id -u amrsandbox >/dev/null 2>&1; then
  useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin amrsandbox
fi

echo "system deps ok: ${packages[*]}, user amrsandbox ($(id -u amrsandbox))"
