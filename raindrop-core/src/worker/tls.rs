//! The TLS configuration of the worker's HTTP clients.
//!
//! reqwest 0.13 is built with `rustls-no-provider`: its default provider
//! would be aws-lc-rs, a second and larger C build beside the ring the SDK
//! already has. So the worker hands reqwest a rustls configuration of its
//! own, on ring, trusting exactly the configured roots.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::RootCertStore;

use crate::endpoint::Tls;
use crate::options::TlsRoots;

/// ring, as the provider of the SDK's own clients.
fn ring() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Makes ring rustls's process-wide crypto provider, unless one is
/// installed already (that one is kept).
///
/// The SDK is on reqwest 0.13 with rustls and its `rustls-no-provider`
/// feature (reqwest's default provider, aws-lc-rs, is a second and larger
/// C build beside ring). A reqwest 0.13 client that names no provider of its
/// own uses the installed one, and panics when building if there is none:
/// yours, when no crate of your build enables reqwest's `rustls` feature,
/// or rig's and genai's shared clients with their `rustls` feature off.
/// [`Client::new`](crate::Client::new) (so `raindrop::init`) calls this;
/// call it yourself if you build such a client before.
///
/// ```
/// raindrop_core::install_tls_provider();
/// let http = reqwest::Client::new();
/// # drop(http);
/// ```
pub fn install_tls_provider() {
    if CryptoProvider::get_default().is_none() {
        // Losing a race to another installer is fine: one is installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// A rustls client configuration on ring trusting `tls`'s roots, with
/// ALPN for HTTP/2 and HTTP/1.1 (what reqwest sets on its own configs).
pub(crate) fn client_config(tls: &Tls) -> Result<rustls::ClientConfig, std::io::Error> {
    let mut roots = RootCertStore::empty();
    if matches!(tls.roots, TlsRoots::Bundled | TlsRoots::BundledAndNative) {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    #[cfg(feature = "native-roots")]
    if matches!(tls.roots, TlsRoots::Native | TlsRoots::BundledAndNative) {
        let native = rustls_native_certs::load_native_certs();
        let (added, _) = roots.add_parsable_certificates(native.certs);
        if added == 0 && tls.roots == TlsRoots::Native {
            return Err(std::io::Error::other(
                "no usable certificate in the platform's certificate store",
            ));
        }
    }
    for ca in &tls.extra {
        roots.add(ca.clone()).map_err(std::io::Error::other)?;
    }
    let mut config = rustls::ClientConfig::builder_with_provider(ring())
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}
