//! The rustls client configuration for the apiservers: the kubeconfig CA (or, loudly, no
//! verification), the client certificate, ALPN h2 + http/1.1, and the aws-lc-rs provider passed
//! explicitly so no process-wide default is needed.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

use crate::UpstreamError;

/// What the TLS layer needs to know; built by the binary from the kubeconfig.
#[derive(Debug)]
pub struct TlsSettings {
    /// Trusted CAs.
    pub roots: Vec<CertificateDer<'static>>,
    /// Verify the server certificate against this name instead of each endpoint's host.
    pub server_name: Option<String>,
    /// Skip verification entirely (`insecure-skip-tls-verify`).
    pub insecure: bool,
    /// Client certificate chain and key for mutual TLS.
    pub identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
}

/// Builds the client configuration.
pub fn client_config(settings: &TlsSettings) -> Result<Arc<ClientConfig>, UpstreamError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| UpstreamError::config(format!("TLS setup: {e}")))?;
    let builder = if settings.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
    } else {
        let mut roots = RootCertStore::empty();
        let (added, _ignored) = roots.add_parsable_certificates(settings.roots.iter().cloned());
        if added == 0 {
            return Err(UpstreamError::config(
                "no usable CA certificate to verify the apiserver with; set certificate-authority in the kubeconfig",
            ));
        }
        builder.with_root_certificates(roots)
    };
    let mut config = match &settings.identity {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain.clone(), key.clone_key())
            .map_err(|e| UpstreamError::config(format!("client certificate unusable: {e}")))?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    // Session resumption avoids full handshakes when connections are replaced.
    config.resumption = rustls::client::Resumption::in_memory_sessions(256);
    Ok(Arc::new(config))
}

/// The name to verify for an endpoint.
pub fn server_name(
    configured: Option<&str>,
    host: &str,
) -> Result<ServerName<'static>, UpstreamError> {
    let name = configured.unwrap_or(host);
    ServerName::try_from(name.to_owned())
        .map_err(|_| UpstreamError::config(format!("`{name}` is not a valid TLS server name")))
}

/// Accepts any certificate: what `insecure-skip-tls-verify: true` asks for. Signatures are
/// still checked so the handshake itself is sound.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
