//! HTTPS on the listener: a certificate and key from PEM files and, optionally, client
//! certificates required and verified against a CA file — what protects a listener on a pod IP.

use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;

/// The HTTPS configuration `[listen]` asks for (`tls_cert_file` and `tls_key_file`, client
/// certificates required when `client_ca_file` is set); `None` serves plain HTTP.
pub fn from_listen(
    listen: &kprox_config::ListenConfig,
) -> Result<Option<Arc<ServerConfig>>, String> {
    match (&listen.tls_cert_file, &listen.tls_key_file) {
        (Some(cert), Some(key)) => {
            server_config(cert, key, listen.client_ca_file.as_deref()).map(Some)
        }
        _ => Ok(None),
    }
}

/// Builds the server TLS configuration; errors name the file at fault.
pub fn server_config(
    cert_file: &Path,
    key_file: &Path,
    client_ca_file: Option<&Path>,
) -> Result<Arc<ServerConfig>, String> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))
    };
    let chain = kprox_auth::parse_certificates(&read(cert_file)?)
        .map_err(|e| format!("{}: {e}", cert_file.display()))?;
    let key = kprox_auth::parse_private_key(&read(key_file)?)
        .map_err(|e| format!("{}: {e}", key_file.display()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match client_ca_file {
        Some(ca_file) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in kprox_auth::parse_certificates(&read(ca_file)?)
                .map_err(|e| format!("{}: {e}", ca_file.display()))?
            {
                roots
                    .add(cert)
                    .map_err(|e| format!("{}: {e}", ca_file.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| format!("{}: {e}", ca_file.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| format!("{}: {e}", cert_file.display()))?;
    // kprox serves HTTP/1.1 to clients (upgrades for exec and port-forward need it).
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
