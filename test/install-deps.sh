#!/bin/sh
# `npm test` runs private redis-server processes, a real nginx (with openssl-made certificates) and
# Chromium: install the missing ones from Debian's packages (as root), or say what to install.
# A no-op when all are there.
need=""
command -v redis-server >/dev/null 2>&1 || need="$need redis-server"
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need="$need nginx"
command -v openssl >/dev/null 2>&1 || need="$need openssl"
[ -x /usr/bin/chromium ] || [ "${SKIP_BROWSER:-}" = 1 ] || need="$need chromium"
[ -z "$need" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "npm test: installing$need" >&2
  apt-get update -qq >/dev/null 2>&1
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need >/dev/null
else
  echo "npm test needs:$need (Debian: sudo apt-get install$need)" >&2
  exit 1
fi
