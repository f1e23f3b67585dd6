#!/usr/bin/env bash
# A self-signed certificate and its key for a node's HTTPS gateway, made once and kept: EC P-256,
# valid ten years, for the node's name, localhost, 127.0.0.1 and any names or addresses given.
# Prints the SHA-256 fingerprint, which a client can check, and `decos ctl --cacert CERT` trusts.
#
#   boot/tls-cert.sh NODE CERT KEY [DNS-OR-IP …]
set -euo pipefail
node=${1:?usage: boot/tls-cert.sh NODE CERT KEY [DNS-OR-IP …]} cert=${2:?certificate file} key=${3:?key file}
shift 3
if [ ! -s "$cert" ] || [ ! -s "$key" ]; then
  sans="DNS:$node,DNS:localhost,IP:127.0.0.1"
  for n in "$@"; do
    if [[ "$n" =~ ^[0-9.]+$ || "$n" == *:* ]]; then sans+=",IP:$n"; else sans+=",DNS:$n"; fi
  done
  mkdir -p "$(dirname "$cert")" "$(dirname "$key")"
  (umask 077; openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
     -subj "/CN=$node" -addext "subjectAltName=$sans" -keyout "$key" -out "$cert" 2>/dev/null)
  chmod 0644 "$cert"
  echo "tls: new self-signed certificate for $node ($sans) in $cert, key in $key"
fi
echo "tls: $cert SHA-256 fingerprint $(openssl x509 -in "$cert" -noout -fingerprint -sha256 | cut -d= -f2)"
