#!/usr/bin/env bash
# ensure_apt.sh PACKAGE FILE: install the Debian package that provides FILE when FILE is missing.
# Needs root (as on the project's machines and in CI); otherwise says what to run.
set -euo pipefail
package=$1 file=$2
[ -e "$file" ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "pyioso: $file is missing: run 'sudo apt-get install $package' (needs root)" >&2
    exit 1
fi
echo "pyioso: installing $package (provides $file)"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$package" >/dev/null
[ -e "$file" ] || { echo "pyioso: $package did not provide $file" >&2; exit 1; }
