#!/usr/bin/env bash
# Set up mdtool on a fresh Debian 12 machine, as root: system packages, a virtualenv in
# ./.venv with mdtool installed (editable), and /usr/local/bin/mdtool.
#   scripts/setup.sh          what the demo needs
#   scripts/setup.sh --test   also the test tools, a local PostgreSQL server and the
#                             interop tier's side virtualenv .venv-openstack (Neutron, Nova)
set -euo pipefail
cd "$(dirname "$0")/.."
want_test=0
[ "${1:-}" = "--test" ] && want_test=1

if [ "$(id -u)" -ne 0 ]; then
  echo "setup: run as root (network namespaces, dnsmasq and apt need it)" >&2
  exit 2
fi

pkgs=(iproute2 dnsmasq-base isc-dhcp-client udhcpc curl procps net-tools)
# nft: port security of plugged instance ports (bridge family rules).
pkgs+=(nftables)
# ssh-keygen: the README's walk-through and the operator guide make vm1's SSH key with it.
pkgs+=(openssh-client)
# cloud-init: the real metadata reader, run with Debian's /usr/bin/python3.
pkgs+=(cloud-init python3)
if [ "$want_test" = 1 ]; then
  pkgs+=(haproxy wrk postgresql)
  # python3-venv: Debian's python3 builds .venv-openstack (Neutron and Nova, tests/interop).
  pkgs+=(python3-venv)
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  # policy-rc.d keeps package scripts from starting services we do not want (a host-wide
  # dnsmasq or cloud-init run); PostgreSQL is started below, on our terms.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  rm -f /usr/sbin/policy-rc.d
fi

py=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$py" -m venv .venv
fi
extras="."
[ "$want_test" = 1 ] && extras=".[test]"
.venv/bin/pip install -q --disable-pip-version-check -e "$extras" 2>&1 | grep -v "^WARNING: Location" >&2 || true
.venv/bin/python -c "import mdtool.cli" || { echo "setup: mdtool did not install" >&2; exit 1; }
ln -sf "$PWD/.venv/bin/mdtool" /usr/local/bin/mdtool

if [ "$want_test" = 1 ]; then
  scripts/postgres.sh start
  # The interop tier (tests/interop) runs Neutron's and Nova's own code against mdtool.
  # They live in a side virtualenv so their pins never meet mdtool's; it is reused while
  # it was built from the same requirements file (0.5 to 2 min to build with a cold pip cache here).
  osreq=tests/interop/requirements.txt
  if ! cmp -s "$osreq" .venv-openstack/requirements.txt 2>/dev/null; then
    echo "setup: building .venv-openstack (neutron and nova for the interop tests)" >&2
    rm -rf .venv-openstack
    ospy=/usr/bin/python3
    [ -x "$ospy" ] || ospy=$py
    "$ospy" -m venv .venv-openstack
    .venv-openstack/bin/pip install -q --disable-pip-version-check -r "$osreq" 2>&1 \
      | grep -v "^WARNING: Location" >&2 || true
    .venv-openstack/bin/python -W ignore -c "import neutron.agent.linux.dhcp, nova.api.metadata.handler" \
      || { echo "setup: neutron/nova did not install in .venv-openstack" >&2; exit 1; }
    cp "$osreq" .venv-openstack/requirements.txt
  fi
fi
echo "setup: mdtool $(.venv/bin/mdtool --version | awk '{print $3}') ready: /usr/local/bin/mdtool" >&2
