//! Client certificates: a PEM certificate chain and private key, from files or kubeconfig
//! `*-data` fields, turned into the DER forms rustls takes.

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::Secret;

/// A certificate chain and its private key.
#[derive(Debug)]
pub struct ClientIdentity {
    /// Leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The private key; never printed.
    pub key: Secret<PrivateKeyDer<'static>>,
}

impl Clone for ClientIdentity {
    fn clone(&self) -> Self {
        Self {
            chain: self.chain.clone(),
            key: Secret::new(self.key.expose().clone_key()),
        }
    }
}

/// Parses PEM certificates; at least one is required.
pub fn parse_certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not a PEM certificate ({e})"))?;
    if certs.is_empty() {
        return Err("no PEM certificate found".to_owned());
    }
    Ok(certs)
}

/// Parses a PEM private key (PKCS#8, PKCS#1 RSA or SEC1 EC). The error never quotes the key.
pub fn parse_private_key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|_| "no usable PEM private key found".to_owned())
}

/// Builds an identity from PEM certificate and key bytes.
pub fn identity_from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<ClientIdentity, String> {
    Ok(ClientIdentity {
        chain: parse_certificates(cert_pem)?,
        key: Secret::new(parse_private_key(key_pem)?),
    })
}
