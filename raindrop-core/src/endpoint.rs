//! The endpoint and TLS setup of a new client: checked in `Client::new`, so
//! a bad URL or certificate is an error there instead of a silent failure on
//! the worker, which builds its HTTP client from what is checked here.

use crate::Error;

pub(crate) fn normalise_endpoint(endpoint: &str) -> Result<reqwest::Url, Error> {
    let trimmed = endpoint.trim().trim_end_matches('/');
    let url = reqwest::Url::parse(&format!("{trimmed}/")).map_err(|e| Error::Config {
        field: "endpoint",
        reason: format!("`{endpoint}` is not a URL: {e}"),
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Error::Config {
            field: "endpoint",
            reason: format!("scheme `{}` is not http or https", url.scheme()),
        });
    }
    Ok(url)
}

pub(crate) fn warn_if_plain_http(url: &reqwest::Url) {
    if url.scheme() != "http" {
        return;
    }
    let loopback = match url.host_str() {
        Some("localhost") => true,
        Some(h) => h
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    };
    if !loopback {
        tracing::warn!(target: "raindrop", "the endpoint uses plain http to a non-loopback host: the write key would travel unencrypted");
    }
}

/// The TLS trust the worker's HTTP client is built with, checked up front so
/// a bad certificate is an error from `Client::new`, not a silent failure.
#[derive(Clone, Default)]
pub(crate) struct Tls {
    pub(crate) roots: crate::TlsRoots,
    pub(crate) extra: Vec<rustls::pki_types::CertificateDer<'static>>,
}

pub(crate) fn tls(options: &crate::ClientOptions) -> Result<Tls, Error> {
    if matches!(
        options.tls_roots,
        crate::TlsRoots::Native | crate::TlsRoots::BundledAndNative
    ) && !cfg!(feature = "native-roots")
    {
        return Err(Error::Config {
            field: "tls_roots",
            reason: "the platform's certificate store needs the `native-roots` feature".into(),
        });
    }
    let mut extra = Vec::new();
    for (i, pem) in options.ca_certificates.iter().enumerate() {
        use rustls::pki_types::{pem::PemObject, CertificateDer};
        let certs = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Error::Config {
                field: "ca_certificates",
                reason: format!("entry {i} is not a PEM certificate: {e}"),
            })?;
        if certs.is_empty() {
            return Err(Error::Config {
                field: "ca_certificates",
                reason: format!("entry {i} holds no PEM certificate"),
            });
        }
        extra.extend(certs);
    }
    Ok(Tls {
        roots: options.tls_roots,
        extra,
    })
}
