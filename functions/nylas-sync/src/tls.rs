//! The one TLS configuration and HTTP client of a process, and where they find their trust
//! anchors.
//!
//! Every client of a function (the AWS SDK's, through [`crate::aws::sdk_http_client`], and the
//! Nylas client) speaks HTTP/1.1 through reqwest with the same `rustls` configuration (aws-lc-rs):
//! one crypto provider, one HTTP stack, one root store. The root store is built at the first TLS
//! handshake, not at start: a cold start reads and parses no certificate, and a process that only
//! talks plain HTTP (to a local emulator) never does. Left to themselves, the SDK built one store
//! per client at construction and reqwest another (each a parse of ~150 roots).
//!
//! The roots come from the system bundle. Left to probe, `rustls-native-certs` reads the PEM
//! bundle *and* every file of the certificate directory (about 150 on Debian; on Amazon Linux
//! 2023 the directory holds the bundle itself, read again); pointing `SSL_CERT_FILE` at the one
//! bundle reads it once (BENCHMARKS.md, cold start).

use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// The process's TLS configuration (a clone shares its verifier and so its root store).
pub fn client_config() -> ClientConfig {
    static CONFIG: OnceLock<ClientConfig> = OnceLock::new();
    CONFIG.get_or_init(new_client_config).clone()
}

fn new_client_config() -> ClientConfig {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = Arc::new(SystemRoots {
        provider: Arc::clone(&provider),
        verifier: OnceLock::new(),
    });
    // `with_protocol_versions` only fails for versions the provider lacks: aws-lc-rs has both.
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .unwrap_or_else(|e| panic!("aws-lc-rs supports TLS 1.2 and 1.3: {e}"))
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config
}

/// A builder for a reqwest client on the process's TLS configuration.
pub fn http_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder().tls_backend_preconfigured(client_config())
}

/// The process's shared HTTP client (no timeouts of its own, no redirects), built at first use.
pub fn http() -> reqwest::Client {
    static HTTP: OnceLock<reqwest::Client> = OnceLock::new();
    HTTP.get_or_init(|| {
        http_builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_else(|e| panic!("the HTTP client cannot be built: {e}"))
    })
    .clone()
}

/// WebPKI verification against the system's roots, read and parsed at the first handshake.
#[derive(Debug)]
struct SystemRoots {
    provider: Arc<CryptoProvider>,
    verifier: OnceLock<Result<Arc<WebPkiServerVerifier>, String>>,
}

impl SystemRoots {
    fn verifier(&self) -> Result<&Arc<WebPkiServerVerifier>, rustls::Error> {
        self.verifier
            .get_or_init(|| {
                let found = rustls_native_certs::load_native_certs();
                let mut roots = RootCertStore::empty();
                let (added, _ignored) = roots.add_parsable_certificates(found.certs);
                if added == 0 {
                    return Err("no CA certificate could be loaded from the system".into());
                }
                WebPkiServerVerifier::builder_with_provider(
                    Arc::new(roots),
                    Arc::clone(&self.provider),
                )
                .build()
                .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|e| rustls::Error::General(e.clone()))
    }
}

impl ServerCertVerifier for SystemRoots {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.verifier()?.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )
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
            &self.provider.signature_verification_algorithms,
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
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The system bundles, Amazon Linux (Lambda's `provided.al2023`) first, then Debian/Ubuntu.
pub const SYSTEM_BUNDLES: [&str; 2] = [
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/certs/ca-certificates.crt",
];

/// The bundle to use, unless the operator chose (`SSL_CERT_FILE` or `SSL_CERT_DIR` set): the
/// first of `bundles` that is a file. `None` leaves the TLS stack to probe as it would.
pub fn bundle_to_prefer<'a>(
    var: impl Fn(&str) -> Option<std::ffi::OsString>,
    bundles: &[&'a str],
) -> Option<&'a str> {
    if var("SSL_CERT_FILE").is_some() || var("SSL_CERT_DIR").is_some() {
        return None;
    }
    bundles.iter().copied().find(|b| Path::new(b).is_file())
}

/// Sets `SSL_CERT_FILE` to the system bundle when nothing is set. Call it first thing in
/// `main`, before any thread starts (setting the environment is not thread-safe).
pub fn prefer_system_bundle() {
    if let Some(bundle) = bundle_to_prefer(|k| std::env::var_os(k), &SYSTEM_BUNDLES) {
        std::env::set_var("SSL_CERT_FILE", bundle);
    }
}

/// Runs a function binary's `main`: settles the trust store while the process still has one
/// thread, then runs `main` on a single-threaded tokio runtime. Lambda hands a process one
/// invocation at a time and the functions' concurrency is I/O (SQS, S3, DynamoDB, Nylas calls in
/// flight together), which one thread drives: worker threads would only add their start-up to
/// the cold start and a cross-thread wake-up to every I/O event of every invocation.
/// glibc's allocator serves a buffer above its mmap threshold with a fresh `mmap` and gives it
/// back on free, and trims the heap's top above its trim threshold: a function that receives a
/// 1 MB event, decodes a 1 MB body and uploads it paid page faults for all of it again on every
/// invocation (the kernel's share was about a third of the ingest's CPU). Large buffers now
/// come from the heap and stay mapped between invocations: `bench invocation` measured the
/// ingest's 900 KB paths about 35 to 55% cheaper (BENCHMARKS.md, "Allocator"). The memory stays
/// the process's peak, which a Lambda's memory size pays for anyway.
fn keep_large_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes the allocator's thresholds; it is called before the runtime
    // starts, on the only thread.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
}

pub fn run_function<F, E>(main: impl FnOnce() -> F) -> Result<(), E>
where
    F: std::future::Future<Output = Result<(), E>>,
    E: From<std::io::Error>,
{
    prefer_system_bundle();
    keep_large_buffers();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(main())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    fn none(_: &str) -> Option<OsString> {
        None
    }

    #[test]
    fn the_first_existing_bundle_is_chosen() {
        let dir = std::env::temp_dir().join(format!("tls-bundle-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bundle = dir.join("bundle.pem");
        std::fs::write(&bundle, "").unwrap();
        let bundle = bundle.to_str().unwrap();
        assert_eq!(
            bundle_to_prefer(none, &["/no/such/bundle.crt", bundle]),
            Some(bundle)
        );
        assert_eq!(bundle_to_prefer(none, &["/no/such/bundle.crt"]), None);
        // A directory is not a bundle.
        assert_eq!(bundle_to_prefer(none, &[dir.to_str().unwrap()]), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn every_client_shares_one_root_store_built_at_the_first_handshake() {
        let (a, b) = (client_config(), client_config());
        assert!(Arc::ptr_eq(a.crypto_provider(), b.crypto_provider()));
        assert_eq!(a.alpn_protocols, vec![b"http/1.1".to_vec()]);
        // Nothing read yet; the verifier is shared, so one store serves every clone.
        let roots = SystemRoots {
            provider: Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
            verifier: OnceLock::new(),
        };
        assert!(roots.verifier.get().is_none());
        if Path::new(SYSTEM_BUNDLES[1]).is_file() || Path::new(SYSTEM_BUNDLES[0]).is_file() {
            assert!(roots.verifier().is_ok());
            assert!(roots.verifier.get().is_some());
        }
    }

    #[test]
    fn an_operators_choice_is_left_alone() {
        let existing = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
        assert_eq!(bundle_to_prefer(none, &[existing]), Some(existing));
        for set in ["SSL_CERT_FILE", "SSL_CERT_DIR"] {
            let var = |k: &str| (k == set).then(|| OsString::from("/custom"));
            assert_eq!(bundle_to_prefer(var, &[existing]), None);
        }
    }
}
