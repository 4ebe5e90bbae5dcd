# Sourced by the README's two commands: installs what the project needs, once, then reuses it.
#  - a virtualenv in .venv with stashlet (editable) and its test and lint groups
#  - Debian's containerd, runc, CNI plugins, iptables, conntrack, buildah, debootstrap (the real node)
#  - the pinned binaries (Kubernetes, etcd, restic, rest-server, Pushgateway, CoreDNS, crictl, helm),
#    built from the Go module proxy into ~/.cache/stashlet (see agent/stashlet/api/versions.py)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

need() { command -v "$1" >/dev/null 2>&1 || { echo "stashlet: '$1' is required ($2)" >&2; exit 1; }; }
need python3 "Python >= 3.11"
need go "Go >= 1.25, to build the pinned Kubernetes, etcd and restic once"
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "stashlet: Python >= 3.11 is required" >&2; exit 1; }

# The real node's parts come from Debian: containerd, runc, the CNI plugins, iptables, conntrack, and
# buildah + debootstrap to build the images it runs (see localcluster/stashlet/localcluster/node.py).
node_packages=(containerd runc containernetworking-plugins iptables conntrack buildah debootstrap)
missing=()
for package in "${node_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "stashlet: installing the real node's Debian packages: ${missing[*]} ..." >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "stashlet: the real node needs the Debian packages ${missing[*]} (as root: apt-get install ${missing[*]})" >&2
  fi
fi

if [[ ! -x .venv/bin/python ]]; then
  python3 -m venv .venv
fi
stamp=.venv/.stashlet-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [[ ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
  echo "stashlet: installing Python packages into .venv ..." >&2
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e ".[operator]" --group test --group lint
  echo "$want" > "$stamp"
fi
.venv/bin/python -m stashlet.localcluster.cli install-tools >/dev/null
