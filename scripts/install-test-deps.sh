#!/usr/bin/env bash
# Installs what the tests need when it is missing:
# - cmake and nasm, to build libjpeg-turbo (scripts/install-build-deps.sh),
# - nats-server 2.10+ in .huiying/bin (scripts/install-nats-server.sh),
# - python3 with aiosmtpd (the tests' real SMTP server), moto (a real S3-compatible server),
#   standardwebhooks (verifies webhook signatures independently), nats-py (runs the Python
#   example), jsonschema (validates events against docs/schemas) and openai (the official
#   client, pointed at huiying's OpenAI-compatible images API), dkimpy with pynacl (verifies
#   the mails' DKIM signatures, RSA and Ed25519) and dnslib (a DNS server on loopback),
# - exiftool (Debian's libimage-exiftool-perl): reads the pictures' AI-content labels as an
#   independent reader would,
# - openssl (the tests make their own CA and server certificate),
# - Debian's chromium and fonts-noto-cjk, driven by playwright from PyPI (the web page's
#   browser tests; playwright is pointed at the system browser and downloads none), and
#   schemathesis from PyPI (checks the running server against its OpenAPI description),
# - a running PostgreSQL on 127.0.0.1:5432 (the records tests run on it as well as on
#   SQLite; each test creates and drops a database of its own): started when installed
#   but not running, installed from Debian when missing.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"

bash "$root/scripts/install-build-deps.sh"
bash "$root/scripts/install-nats-server.sh"

apt_updated=""
apt_install() {
  [ -n "$apt_updated" ] || { apt-get update -qq; apt_updated=1; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
}
command -v openssl >/dev/null || apt_install openssl
command -v exiftool >/dev/null || apt_install libimage-exiftool-perl
command -v python3 >/dev/null || apt_install python3 python3-pip
if ! python3 -c 'import aiosmtpd' 2>/dev/null; then
  python3 -m pip install --quiet aiosmtpd || python3 -m pip install --quiet --break-system-packages aiosmtpd
fi
if ! python3 -c 'import moto.server' 2>/dev/null; then
  python3 -m pip install --quiet "moto[server]" || python3 -m pip install --quiet --break-system-packages "moto[server]"
fi
pip_install() {
  python3 -m pip install --quiet "$@" || python3 -m pip install --quiet --break-system-packages "$@"
}
python3 -c 'import standardwebhooks' 2>/dev/null || pip_install standardwebhooks
python3 -c 'import nats' 2>/dev/null || pip_install nats-py
python3 -c 'import jsonschema' 2>/dev/null || pip_install jsonschema
python3 -c 'import openai' 2>/dev/null || pip_install openai
python3 -c 'import dkim, nacl' 2>/dev/null || pip_install dkimpy pynacl
python3 -c 'import dnslib' 2>/dev/null || pip_install dnslib
command -v chromium >/dev/null || apt_install chromium
fc-list 2>/dev/null | grep -q "Noto Sans CJK" || apt_install fonts-noto-cjk fontconfig
python3 -c 'import playwright' 2>/dev/null || pip_install playwright
python3 -c 'import schemathesis' 2>/dev/null || pip_install schemathesis
python3 -c 'import aiosmtpd; print("aiosmtpd:", aiosmtpd.__version__)'
python3 -c 'import moto; print("moto:", moto.__version__)'

# PostgreSQL for the records tests (HUIYING_TEST_POSTGRES names another server).
if [ -z "${HUIYING_TEST_POSTGRES:-}" ] && ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  if [ ! -d /etc/postgresql ] || [ -z "$(ls /etc/postgresql 2>/dev/null)" ]; then
    apt_install postgresql postgresql-contrib
    # A fresh install asks for passwords over TCP; the tests log in as postgres, as on
    # the CI machines, with trust from loopback only.
    for hba in /etc/postgresql/*/main/pg_hba.conf; do
      sed -i '1i host all postgres 127.0.0.1/32 trust' "$hba"
    done
  fi
  for version in $(ls /etc/postgresql); do
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  done
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
fi
if [ -z "${HUIYING_TEST_POSTGRES:-}" ]; then
  pg_isready -h 127.0.0.1 -p 5432
fi
