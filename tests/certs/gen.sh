#!/usr/bin/env bash
# Regenerates the test PKI used by the pistachio test suite.
#
# Run from anywhere: `bash tests/certs/gen.sh`. It writes into the directory
# that holds this script and overwrites every file listed below. All files are
# test material only: the private keys are public by being checked in.
#
# Layout:
#
#   ca.pem / ca.key                      test root CA (self-signed)
#     └─ intermediate.pem / .key         intermediate CA, signed by the root
#          └─ server.pem / server.key    leaf for localhost, 127.0.0.1, ::1
#   ca.pem
#     └─ client.pem / client.key         client certificate (CN=pistachio-test-client)
#
#   untrusted-ca.pem / untrusted-ca.key  an unrelated root CA
#     └─ untrusted-client.pem / .key     client certificate nobody should trust
#
#   server-chain.pem       server.pem followed by intermediate.pem: the file a
#                          server loads as its certificate chain
#   server-encrypted.key   server.key encrypted (PKCS#8, AES-256-CBC) with the
#                          password `pistachio`
#   server-traditional.key server.key in the traditional EC format
#                          ("BEGIN EC PRIVATE KEY")
#   server-encrypted-traditional.key
#                          server.key, traditional format, PEM-encrypted
#                          (AES-256-CBC, DEK-Info header), password `pistachio`
#
#   intermediate.pem
#     ├─ other.pem / other.key           second leaf, for DNS:other.test only
#     │                                  (the SNI tests); other-chain.pem = other.pem
#     │                                  + intermediate.pem
#     └─ server-rsa.pem / .key           leaf for localhost, 127.0.0.1, ::1 with
#                                        an RSA 2048 key (PKCS#8);
#                                        server-rsa-chain.pem = leaf + intermediate,
#                                        server-rsa-traditional.key = the same key
#                                        as "BEGIN RSA PRIVATE KEY"
#
# Keys are EC P-256 in unencrypted PKCS#8 PEM ("BEGIN PRIVATE KEY") unless
# their name says otherwise (-rsa, -traditional, -encrypted).
# Validity is 36500 days so the files never need regenerating in practice.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"

DAYS=36500
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# newkey FILE: a fresh EC P-256 private key, PKCS#8, unencrypted.
newkey() {
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"
}

# selfsign KEY SUBJECT SERIAL OUT: a self-signed root CA certificate with the
# extensions in $TMP/ca.ext.
selfsign() {
    openssl req -new -key "$1" -subj "$2" -out "$TMP/selfsign.csr"
    openssl x509 -req -sha256 -days "$DAYS" -in "$TMP/selfsign.csr" \
        -signkey "$1" -set_serial "$3" -extfile "$TMP/ca.ext" -out "$4"
}

# ---------------------------------------------------------------------------
# ca.pem, ca.key: the trusted test root CA. Clients verify servers against it
# and servers that ask for client certificates trust it.
newkey ca.key
cat > "$TMP/ca.ext" <<'EXT'
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
EXT
selfsign ca.key "/O=pistachio tests/CN=pistachio test root CA" 0x0001 ca.pem

# ---------------------------------------------------------------------------
# intermediate.pem, intermediate.key: an intermediate CA signed by the root.
# The server leaf is signed by it, so a server must send the chain.
newkey intermediate.key
cat > "$TMP/intermediate.ext" <<'EXT'
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
EXT
openssl req -new -key intermediate.key \
    -subj "/O=pistachio tests/CN=pistachio test intermediate CA" \
    -out "$TMP/intermediate.csr"
openssl x509 -req -sha256 -days "$DAYS" -in "$TMP/intermediate.csr" \
    -CA ca.pem -CAkey ca.key -set_serial 0x1001 \
    -extfile "$TMP/intermediate.ext" -out intermediate.pem

# ---------------------------------------------------------------------------
# server.pem, server.key: the server leaf, valid for DNS:localhost,
# IP:127.0.0.1 and IP:::1, signed by the intermediate.
newkey server.key
cat > "$TMP/server.ext" <<'EXT'
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1, IP:::1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
EXT
openssl req -new -key server.key -subj "/O=pistachio tests/CN=localhost" \
    -out "$TMP/server.csr"
openssl x509 -req -sha256 -days "$DAYS" -in "$TMP/server.csr" \
    -CA intermediate.pem -CAkey intermediate.key -set_serial 0x2001 \
    -extfile "$TMP/server.ext" -out server.pem

# server-chain.pem: leaf then intermediate (what the server presents).
cat server.pem intermediate.pem > server-chain.pem

# server-encrypted.key: the same key as server.key, PKCS#8 encrypted with
# the password `pistachio`.
openssl pkcs8 -topk8 -v2 aes-256-cbc -in server.key \
    -passout pass:pistachio -out server-encrypted.key

# ---------------------------------------------------------------------------
# client.pem, client.key: a client certificate signed directly by the root CA,
# CN=pistachio-test-client, for mutual-TLS tests.
newkey client.key
cat > "$TMP/client.ext" <<'EXT'
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
EXT
openssl req -new -key client.key \
    -subj "/O=pistachio tests/CN=pistachio-test-client" -out "$TMP/client.csr"
openssl x509 -req -sha256 -days "$DAYS" -in "$TMP/client.csr" \
    -CA ca.pem -CAkey ca.key -set_serial 0x3001 \
    -extfile "$TMP/client.ext" -out client.pem

# ---------------------------------------------------------------------------
# untrusted-ca.pem (+ untrusted-ca.key): an unrelated root CA, and
# untrusted-client.pem / untrusted-client.key: a client certificate it signed.
# A server trusting only ca.pem must reject this client.
newkey untrusted-ca.key
selfsign untrusted-ca.key "/O=pistachio tests/CN=pistachio untrusted root CA" \
    0x0002 untrusted-ca.pem
newkey untrusted-client.key
openssl req -new -key untrusted-client.key \
    -subj "/O=pistachio tests/CN=pistachio-untrusted-client" \
    -out "$TMP/untrusted-client.csr"
openssl x509 -req -sha256 -days "$DAYS" -in "$TMP/untrusted-client.csr" \
    -CA untrusted-ca.pem -CAkey untrusted-ca.key -set_serial 0x4001 \
    -extfile "$TMP/client.ext" -out untrusted-client.pem

# ---------------------------------------------------------------------------
# Key format variants of server.key, for the key-loading tests:
# server-traditional.key (SEC1, "BEGIN EC PRIVATE KEY") and
# server-encrypted-traditional.key (the same, PEM-encrypted with DEK-Info,
# password `pistachio`).
openssl pkey -in server.key -traditional -out server-traditional.key
openssl pkey -in server.key -traditional -aes-256-cbc \
    -passout pass:pistachio -out server-encrypted-traditional.key

# ---------------------------------------------------------------------------
# server-rsa.pem, server-rsa.key: the server leaf again (same names), with an
# RSA 2048 key; server-rsa-traditional.key is that key as PKCS#1
# ("BEGIN RSA PRIVATE KEY").
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out server-rsa.key
openssl pkey -in server-rsa.key -traditional -out server-rsa-traditional.key
openssl req -new -key server-rsa.key -subj "/O=pistachio tests/CN=localhost" \
    -out "$TMP/server-rsa.csr"
openssl x509 -req -sha256 -days "$DAYS" -in "$TMP/server-rsa.csr" \
    -CA intermediate.pem -CAkey intermediate.key -set_serial 0x2002 \
    -extfile "$TMP/server.ext" -out server-rsa.pem
cat server-rsa.pem intermediate.pem > server-rsa-chain.pem

# ---------------------------------------------------------------------------
# other.pem, other.key: a second server leaf for DNS:other.test only
# (CN=other.test), signed by the intermediate: the certificate a server
# selects by SNI, or reloads. other-chain.pem: leaf then intermediate.
newkey other.key
cat > "$TMP/other.ext" <<'EXT'
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:other.test
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
EXT
openssl req -new -key other.key -subj "/O=pistachio tests/CN=other.test" \
    -out "$TMP/other.csr"
openssl x509 -req -sha256 -days "$DAYS" -in "$TMP/other.csr" \
    -CA intermediate.pem -CAkey intermediate.key -set_serial 0x2003 \
    -extfile "$TMP/other.ext" -out other.pem
cat other.pem intermediate.pem > other-chain.pem

# Test keys are not secrets; keep them readable by whoever runs the tests.
chmod 644 ./*.key

# ---------------------------------------------------------------------------
# Self-check.
openssl verify -CAfile ca.pem -untrusted intermediate.pem server.pem
openssl verify -CAfile ca.pem client.pem
openssl verify -CAfile untrusted-ca.pem untrusted-client.pem
openssl verify -CAfile ca.pem -untrusted intermediate.pem server-rsa.pem
openssl verify -CAfile ca.pem -untrusted intermediate.pem other.pem
