#!/usr/bin/env bash
# Writes a private PKI for the TLS tests of C and Python into DIR (made if missing), with the
# openssl command line (scripts/install-deps installs it): a test CA, a server certificate for
# `localhost` issued by it, a client certificate for device 1001 (subject CN = 1001, what
# `mode-sim --client-ca` maps to a device) issued by it, and the same client certificate issued
# by a CA the simulator does not trust. Keys are P-256, valid for a day.
#   DIR/ca.pem                                    the test CA (--client-ca, ca_file)
#   DIR/server.pem DIR/server.key                 mode-sim --tls-cert / --tls-key
#   DIR/client.pem DIR/client.key                 device 1001, issued by the test CA
#   DIR/other-client.pem DIR/other-client.key     device 1001, issued by another CA
set -euo pipefail
dir=${1:?usage: make-certs.sh DIR}
mkdir -p "$dir"
cd "$dir"
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
ca() { # NAME CN: a self-signed CA
  key "$1.key"
  openssl req -x509 -new -key "$1.key" -subj "/CN=$2" -days 1 -out "$1.pem" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
}
leaf() { # NAME CN CA EXTENSIONS: a certificate issued by CA
  key "$1.key"
  openssl req -new -key "$1.key" -subj "/CN=$2" -out "$1.csr"
  printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" "$4" >"$1.ext"
  openssl x509 -req -in "$1.csr" -CA "$3.pem" -CAkey "$3.key" -set_serial "0x$(openssl rand -hex 8)" \
    -days 1 -extfile "$1.ext" -out "$1.pem" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}
ca ca "libmode test CA"
ca other-ca "a CA nobody trusts"
leaf server localhost ca "extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost"
leaf client 1001 ca "extendedKeyUsage=clientAuth"
leaf other-client 1001 other-ca "extendedKeyUsage=clientAuth"
rm -f ca.key other-ca.key other-ca.pem
