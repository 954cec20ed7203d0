//! Where the TLS stack finds its trust anchors. The AWS SDK and the Nylas client (rustls, via
//! `rustls-native-certs`) read the system's roots at client construction, once per cold start
//! and per client. Left to probe, they read the PEM bundle *and* every file of the certificate
//! directory (about 150 on Debian; on Amazon Linux 2023 the directory holds the bundle itself,
//! read again): 2–5 ms of each cold start, for the same certificates. Pointing `SSL_CERT_FILE`
//! at the one bundle reads it once (BENCHMARKS.md, cold start).

use std::path::Path;

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
/// thread, then runs `main` on a multi-threaded tokio runtime.
pub fn run_function<F, E>(main: impl FnOnce() -> F) -> Result<(), E>
where
    F: std::future::Future<Output = Result<(), E>>,
    E: From<std::io::Error>,
{
    prefer_system_bundle();
    tokio::runtime::Builder::new_multi_thread()
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
    fn an_operators_choice_is_left_alone() {
        let existing = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
        assert_eq!(bundle_to_prefer(none, &[existing]), Some(existing));
        for set in ["SSL_CERT_FILE", "SSL_CERT_DIR"] {
            let var = |k: &str| (k == set).then(|| OsString::from("/custom"));
            assert_eq!(bundle_to_prefer(var, &[existing]), None);
        }
    }
}
