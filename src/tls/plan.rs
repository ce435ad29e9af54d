//! What the flags make of TLS for the whole run: the certificates shown to clients
//! ([`Certs`]), the configuration of the upstream leg (the system's roots or `--target-ca`,
//! or no verification with `--insecure`), ALPN carried from one leg to the other, and the key
//! log (`--keylog`, `SSLKEYLOGFILE`, and the capture's decryption secrets). Configurations
//! are made once per ALPN offer or choice and kept, so a handshake allocates only its
//! session.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

use super::ca::{Authority, Certs};

/// The TLS flags, as the command line gives them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Flags {
    /// `--ca-dir` (default [`super::ca::default_dir`]).
    pub ca_dir: Option<PathBuf>,
    /// `--tls-cert`, `--tls-key`.
    pub cert: Option<(PathBuf, PathBuf)>,
    /// `--target-ca`.
    pub target_ca: Option<PathBuf>,
    pub insecure: bool,
    /// Secrets are wanted (`--keylog`, `SSLKEYLOGFILE`, or a capture to decrypt).
    pub keys: bool,
}

/// Secrets as rustls hands them over, in the NSS key log format, until the reactor sends
/// them to the logging thread.
#[derive(Debug, Default)]
pub struct Keys {
    lines: Mutex<String>,
}

impl Keys {
    /// The lines gathered since the last call.
    pub fn take(&self) -> Option<String> {
        let mut l = self.lines.lock().ok()?;
        (!l.is_empty()).then(|| std::mem::take(&mut *l))
    }
}

impl rustls::KeyLog for Keys {
    fn log(&self, label: &str, client_random: &[u8], secret: &[u8]) {
        if let Ok(mut l) = self.lines.lock() {
            l.push_str(label);
            l.push(' ');
            hex_into(&mut l, client_random);
            l.push(' ');
            hex_into(&mut l, secret);
            l.push('\n');
        }
    }
}

fn hex_into(out: &mut String, bytes: &[u8]) {
    use std::fmt::Write;
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
}

/// Configurations kept per ALPN list; past this many the cache starts again.
const CONFIGS: usize = 256;

/// The run's TLS.
pub struct Plan {
    pub certs: Certs,
    provider: Arc<CryptoProvider>,
    verifier: Upstream,
    pub insecure: bool,
    pub keys: Option<Arc<Keys>>,
    clients: HashMap<Vec<Vec<u8>>, Arc<ClientConfig>>,
    servers: HashMap<(usize, Option<Vec<u8>>), Arc<ServerConfig>>,
    refusing: Option<Arc<ServerConfig>>,
    /// Where the roots came from, for the start-up line.
    pub roots: String,
}

enum Upstream {
    Roots(Arc<RootCertStore>),
    None(Arc<NoVerify>),
}

impl Plan {
    /// Builds the run's TLS: loads or makes the CA, loads the roots. Any failure is one line.
    pub fn new(flags: &Flags) -> Result<Plan, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certs = match &flags.cert {
            Some((cert, key)) => Certs::Fixed(super::ca::load_fixed(cert, key)?),
            None => {
                let dir = match &flags.ca_dir {
                    Some(d) => d.clone(),
                    None => super::ca::default_dir().ok_or(
                        "--tls: no CA directory (HOME and XDG_CONFIG_HOME are unset); give --ca-dir DIR",
                    )?,
                };
                Certs::Authority(Box::new(
                    Authority::load_or_create(&dir).map_err(|e| format!("--tls: {e}"))?,
                ))
            }
        };
        let (verifier, roots) = match (&flags.target_ca, flags.insecure) {
            (_, true) => (
                Upstream::None(Arc::new(NoVerify(
                    provider.signature_verification_algorithms,
                ))),
                "not verified (--insecure)".to_string(),
            ),
            (Some(path), false) => (
                Upstream::Roots(Arc::new(load_roots(path)?)),
                format!("verified against {}", path.display()),
            ),
            (None, false) => {
                let found = rustls_native_certs::load_native_certs();
                let mut store = RootCertStore::empty();
                let (added, _) = store.add_parsable_certificates(found.certs);
                (
                    Upstream::Roots(Arc::new(store)),
                    format!("verified against the system's {added} roots"),
                )
            }
        };
        Ok(Plan {
            certs,
            provider,
            verifier,
            insecure: flags.insecure,
            keys: flags.keys.then(|| Arc::new(Keys::default())),
            clients: HashMap::new(),
            servers: HashMap::new(),
            refusing: None,
            roots,
        })
    }

    /// The upstream leg's configuration for a client that offered `alpn`.
    pub fn client_config(&mut self, alpn: Vec<Vec<u8>>) -> Result<Arc<ClientConfig>, String> {
        if let Some(c) = self.clients.get(&alpn) {
            return Ok(c.clone());
        }
        let builder = ClientConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let mut config = match &self.verifier {
            Upstream::Roots(r) => builder.with_root_certificates(r.clone()),
            Upstream::None(v) => builder
                .dangerous()
                .with_custom_certificate_verifier(v.clone()),
        }
        .with_no_client_auth();
        config.alpn_protocols = alpn.clone();
        if let Some(k) = &self.keys {
            config.key_log = k.clone();
        }
        let config = Arc::new(config);
        if self.clients.len() >= CONFIGS {
            self.clients.clear();
        }
        self.clients.insert(alpn, config.clone());
        Ok(config)
    }

    /// The client leg's configuration: `cert` for it, and the ALPN protocol the target
    /// chose (none if it chose none).
    pub fn server_config(
        &mut self,
        cert: Arc<CertifiedKey>,
        alpn: Option<Vec<u8>>,
    ) -> Result<Arc<ServerConfig>, String> {
        let key = (Arc::as_ptr(&cert) as usize, alpn.clone());
        if let Some(c) = self.servers.get(&key) {
            return Ok(c.clone());
        }
        let mut config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(One(Some(cert))));
        config.alpn_protocols = alpn.into_iter().collect();
        if let Some(k) = &self.keys {
            config.key_log = k.clone();
        }
        // Tickets, as real servers send them: a client may resume its session with tcpspy
        // (the upstream handshake is made anew all the same), and the tickets leave at once
        // after the client's Finished, carrying the ACK that a client with Nagle's algorithm
        // waits for before it sends its first request (without them: a delayed ACK, 40 ms).
        config.ticketer =
            rustls::crypto::ring::Ticketer::new().map_err(|e| format!("TLS tickets: {e}"))?;
        let config = Arc::new(config);
        if self.servers.len() >= CONFIGS {
            self.servers.clear();
        }
        self.servers.insert(key, config.clone());
        Ok(config)
    }

    /// A configuration that has no certificate: accepting a hello with it fails, and the
    /// alert it makes tells the client the handshake failed (the target could not be
    /// reached over TLS).
    pub fn refusing(&mut self) -> Result<Arc<ServerConfig>, String> {
        if let Some(c) = &self.refusing {
            return Ok(c.clone());
        }
        let config = Arc::new(
            ServerConfig::builder_with_provider(self.provider.clone())
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .with_no_client_auth()
                .with_cert_resolver(Arc::new(One(None))),
        );
        self.refusing = Some(config.clone());
        Ok(config)
    }
}

/// The name the upstream handshake asks for: the client's SNI, else the target's host name,
/// else its address.
pub fn server_name(sni: Option<&str>, target_host: &str, ip: IpAddr) -> ServerName<'static> {
    for name in [sni, Some(target_host)].into_iter().flatten() {
        if let Ok(ip) = name.trim_matches(['[', ']']).parse::<IpAddr>() {
            return ServerName::IpAddress(ip.into());
        }
        if let Ok(n) = ServerName::try_from(name.to_string()) {
            return n;
        }
    }
    ServerName::IpAddress(ip.into())
}

/// The host part of a target as the user wrote it (`api.example.com:443`, `[::1]:443`).
pub fn host_of(target: &str) -> &str {
    match target.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h.trim_matches(['[', ']']),
        _ => target,
    }
}

fn load_roots(path: &Path) -> Result<RootCertStore, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("--target-ca {}: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("--target-ca {}: {e}", path.display()))?;
    let mut store = RootCertStore::empty();
    let (added, _) = store.add_parsable_certificates(certs);
    if added == 0 {
        return Err(format!(
            "--target-ca {}: no certificate in it",
            path.display()
        ));
    }
    Ok(store)
}

/// One certificate for every hello (or none, to refuse).
#[derive(Debug)]
struct One(Option<Arc<CertifiedKey>>);

impl ResolvesServerCert for One {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.clone()
    }
}

/// `--insecure`: any certificate is taken; the handshake's signatures are still checked, so
/// the session is a real one with whoever holds the certificate's key.
#[derive(Debug)]
struct NoVerify(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for NoVerify {
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
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_for_the_upstream() {
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let n = |sni, host| server_name(sni, host, ip).to_str().into_owned();
        assert!(n(Some("a.example"), "b.example").contains("a.example"));
        assert!(n(None, "b.example").contains("b.example"));
        assert!(n(None, "127.0.0.1").contains("127.0.0.1"));
        assert!(n(None, "").contains("10.0.0.1"));
        assert_eq!(host_of("api.example.com:443"), "api.example.com");
        assert_eq!(host_of("[::1]:443"), "::1");
        assert_eq!(host_of("localhost"), "localhost");
    }

    #[test]
    fn key_log_lines() {
        let k = Keys::default();
        rustls::KeyLog::log(&k, "CLIENT_RANDOM", &[1, 2], &[0xab]);
        assert_eq!(k.take().unwrap(), "CLIENT_RANDOM 0102 ab\n");
        assert!(k.take().is_none());
    }
}
