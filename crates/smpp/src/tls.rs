//! SMPP over TLS (rustls with the `ring` provider): the client trusts the platform's roots, or
//! only the CAs of a PEM file; the server side (the simulator's SMSC, tests) takes a PEM
//! certificate chain and key. Either way a bind's stream is a [`Stream`].

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// A byte stream a bind runs on: TCP, or TLS over it.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A bind's stream.
pub type Stream = Box<dyn Io>;

/// TLS that cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file that cannot be read.
    #[error("{path}: {why}")]
    Pem {
        /// The file.
        path: String,
        /// What is wrong with it.
        why: String,
    },
    /// rustls refused the settings.
    #[error("TLS: {0}")]
    Rustls(#[from] rustls::Error),
    /// The platform's roots cannot be loaded.
    #[error("the platform's certificate roots: {0}")]
    Roots(String),
    /// The name to check the server's certificate against is not a name.
    #[error("{0} is not a server name for TLS")]
    Name(String),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn pem_error(path: &Path, why: impl std::fmt::Display) -> TlsError {
    TlsError::Pem {
        path: path.display().to_string(),
        why: why.to_string(),
    }
}

/// A client's TLS settings: the CAs of `ca_file` only, or the platform's roots.
pub fn client_config(ca_file: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?;
    let config = match ca_file {
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(path).map_err(|e| pem_error(path, e))? {
                roots
                    .add(cert.map_err(|e| pem_error(path, e))?)
                    .map_err(|e| pem_error(path, e))?;
            }
            if roots.is_empty() {
                return Err(pem_error(path, "no certificate in it"));
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        None => {
            let verifier = rustls_platform_verifier::Verifier::new(provider())
                .map_err(|e| TlsError::Roots(e.to_string()))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier))
                .with_no_client_auth()
        }
    };
    Ok(Arc::new(config))
}

/// A server's TLS settings from a PEM certificate chain and a PEM private key.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| pem_error(cert, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(cert, e))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| pem_error(key, e))?;
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    Ok(Arc::new(config))
}

/// The name a server's certificate is checked against.
pub fn server_name(name: &str) -> Result<ServerName<'static>, TlsError> {
    ServerName::try_from(name.to_owned()).map_err(|_| TlsError::Name(name.to_owned()))
}

/// Connects to `addr`, over TLS when `tls` says so (checking the certificate against the
/// name).
pub async fn connect(
    addr: &str,
    tls: Option<(&Arc<rustls::ClientConfig>, &ServerName<'static>)>,
) -> std::io::Result<Stream> {
    let tcp = TcpStream::connect(addr).await?;
    let _ = tcp.set_nodelay(true);
    match tls {
        None => Ok(Box::new(tcp)),
        Some((config, name)) => {
            let connector = tokio_rustls::TlsConnector::from(config.clone());
            let stream = connector.connect(name.clone(), tcp).await?;
            Ok(Box::new(stream))
        }
    }
}

/// Accepts TLS on a connection the server took, when it serves TLS.
pub async fn accept(
    tcp: TcpStream,
    tls: Option<&Arc<rustls::ServerConfig>>,
) -> std::io::Result<Stream> {
    let _ = tcp.set_nodelay(true);
    match tls {
        None => Ok(Box::new(tcp)),
        Some(config) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(config.clone());
            Ok(Box::new(acceptor.accept(tcp).await?))
        }
    }
}
