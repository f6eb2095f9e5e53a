#!/usr/bin/env bash
# System packages the sandboxes need (Debian/Ubuntu, run as root). Idempotent: installs only
# what is missing, so CI and developers can run it on every start.
#   bubblewrap  -- the local sandbox backend (amr_dagster/sandbox/bubblewrap.py)
#   python3     -- the interpreter that runs inside the local sandbox (/usr/bin/python3)
#   util-linux  -- prlimit (worker rlimits before bwrap execs); essential on Debian anyway
#   chromium    -- the browser the UI test drives through Playwright (never `playwright install`)
#   postgresql  -- the deployment tests' Dagster instance storage (initdb/pg_ctl, started by the tests)
set -euo pipefail

packages=(bubblewrap python3 util-linux chromium postgresql)

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

# No user account is needed: the local backend runs each worker under its own high uid
# (no passwd entry) so workers cannot signal or count against each other.
echo "system deps ok: ${packages[*]}"
