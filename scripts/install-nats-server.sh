#!/usr/bin/env bash
# Puts a nats-server 2.10 or newer at .huiying/bin/nats-server, unless one is already there.
#
# huiying needs nats-server >= 2.10 (key-value buckets, several filter subjects per
# consumer, `sync_interval: always`). Debian bookworm ships 2.9.10, so this fetches the
# package from Debian trixie with apt (no root-wide source change: a private source
# list and list folder) and unpacks it into .huiying/ without installing it.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
dest="$root/.huiying"
bin="$dest/bin/nats-server"

version_ok() { # true when "$1 --version" reports 2.10 or newer
  local v
  v=$("$1" --version 2>/dev/null | sed -n 's/.*v\([0-9][0-9]*\.[0-9][0-9]*\).*/\1/p') || return 1
  [ -n "$v" ] || return 1
  local major=${v%%.*} minor=${v#*.}
  [ "$major" -gt 2 ] || { [ "$major" -eq 2 ] && [ "$minor" -ge 10 ]; }
}

if [ -x "$bin" ] && version_ok "$bin"; then
  echo "nats-server: $("$bin" --version) at $bin"
  exit 0
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/cache/archives/partial"

# Same mirror as the machine's own Debian source, suite trixie.
uri=$(sed -n 's/^URIs:[[:space:]]*//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n 1)
uri=${uri:-$(sed -n 's/^deb[[:space:]]\+\(http[^[:space:]]*\).*/\1/p' /etc/apt/sources.list 2>/dev/null | head -n 1)}
[ -n "$uri" ] || { echo "install-nats-server: no Debian mirror found in /etc/apt" >&2; exit 1; }
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uri trixie main" > "$work/sources.list"

apt_opts=(-o "Dir::Etc::SourceList=$work/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
  -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache" -o "APT::Sandbox::User=root")
apt-get "${apt_opts[@]}" update -qq
(cd "$work" && apt-get "${apt_opts[@]}" download -qq nats-server)
mkdir -p "$dest/pkg" "$dest/bin"
dpkg-deb -x "$work"/nats-server_*.deb "$dest/pkg"
ln -sf "$dest/pkg/usr/sbin/nats-server" "$bin"
version_ok "$bin" || { echo "install-nats-server: fetched $("$bin" --version), still older than 2.10" >&2; exit 1; }
echo "nats-server: $("$bin" --version) at $bin"
