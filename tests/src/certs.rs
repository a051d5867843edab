//! Paths of the checked-in test PKI (`tests/certs/`, made by `tests/certs/gen.sh`).
//!
//! See `tests/certs/README.md` for what each file is.

use std::path::PathBuf;

/// The directory holding the test certificates: `$CARGO_MANIFEST_DIR/certs`.
pub fn certs_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("certs")
}

fn cert_file(name: &str) -> PathBuf {
    certs_dir().join(name)
}

/// `ca.pem`: the trusted test root CA.
pub fn ca_pem() -> PathBuf {
    cert_file("ca.pem")
}

/// `ca.key`: private key of the test root CA.
pub fn ca_key() -> PathBuf {
    cert_file("ca.key")
}

/// `intermediate.pem`: intermediate CA signed by the root CA.
pub fn intermediate_pem() -> PathBuf {
    cert_file("intermediate.pem")
}

/// `intermediate.key`: private key of the intermediate CA.
pub fn intermediate_key() -> PathBuf {
    cert_file("intermediate.key")
}

/// `server.pem`: the server leaf alone (`localhost`, `127.0.0.1`, `::1`).
pub fn server_pem() -> PathBuf {
    cert_file("server.pem")
}

/// `server-chain.pem`: server leaf followed by the intermediate; what a server loads.
pub fn server_chain_pem() -> PathBuf {
    cert_file("server-chain.pem")
}

/// `server.key`: the server's private key, unencrypted PKCS#8.
pub fn server_key() -> PathBuf {
    cert_file("server.key")
}

/// `server-encrypted.key`: `server.key` encrypted with [`SERVER_KEY_PASSWORD`].
pub fn server_encrypted_key() -> PathBuf {
    cert_file("server-encrypted.key")
}

/// Password of [`server_encrypted_key`].
pub const SERVER_KEY_PASSWORD: &str = "pistachio";

/// `server-traditional.key`: [`server_key`] in the traditional EC format
/// (`BEGIN EC PRIVATE KEY`).
pub fn server_traditional_key() -> PathBuf {
    cert_file("server-traditional.key")
}

/// `server-encrypted-traditional.key`: [`server_key`], traditional format,
/// PEM-encrypted (`DEK-Info`) with [`SERVER_KEY_PASSWORD`].
pub fn server_encrypted_traditional_key() -> PathBuf {
    cert_file("server-encrypted-traditional.key")
}

/// `server-rsa-chain.pem`: a server leaf for the same names as
/// [`server_pem`] with an RSA key, followed by the intermediate.
pub fn server_rsa_chain_pem() -> PathBuf {
    cert_file("server-rsa-chain.pem")
}

/// `server-rsa.key`: the RSA key of [`server_rsa_chain_pem`], PKCS#8.
pub fn server_rsa_key() -> PathBuf {
    cert_file("server-rsa.key")
}

/// `server-rsa-traditional.key`: [`server_rsa_key`] as PKCS#1
/// (`BEGIN RSA PRIVATE KEY`).
pub fn server_rsa_traditional_key() -> PathBuf {
    cert_file("server-rsa-traditional.key")
}

/// `other-chain.pem`: a second server leaf, for `DNS:other.test` only
/// (`CN=other.test`), followed by the intermediate (SNI and reload tests).
pub fn other_chain_pem() -> PathBuf {
    cert_file("other-chain.pem")
}

/// `other.key`: private key of [`other_chain_pem`].
pub fn other_key() -> PathBuf {
    cert_file("other.key")
}

/// `client.pem`: client certificate signed by the root CA (`CN=pistachio-test-client`).
pub fn client_pem() -> PathBuf {
    cert_file("client.pem")
}

/// `client.key`: private key of [`client_pem`].
pub fn client_key() -> PathBuf {
    cert_file("client.key")
}

/// `untrusted-ca.pem`: a root CA unrelated to [`ca_pem`].
pub fn untrusted_ca_pem() -> PathBuf {
    cert_file("untrusted-ca.pem")
}

/// `untrusted-client.pem`: client certificate signed by [`untrusted_ca_pem`].
pub fn untrusted_client_pem() -> PathBuf {
    cert_file("untrusted-client.pem")
}

/// `untrusted-client.key`: private key of [`untrusted_client_pem`].
pub fn untrusted_client_key() -> PathBuf {
    cert_file("untrusted-client.key")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_exists() {
        for path in [
            ca_pem(),
            ca_key(),
            intermediate_pem(),
            intermediate_key(),
            server_pem(),
            server_chain_pem(),
            server_key(),
            server_encrypted_key(),
            client_pem(),
            client_key(),
            untrusted_ca_pem(),
            untrusted_client_pem(),
            untrusted_client_key(),
            server_traditional_key(),
            server_encrypted_traditional_key(),
            server_rsa_chain_pem(),
            server_rsa_key(),
            server_rsa_traditional_key(),
            other_chain_pem(),
            other_key(),
        ] {
            assert!(path.is_file(), "missing {}", path.display());
        }
    }
}
