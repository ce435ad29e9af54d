//! The certificate authority tcpspy signs its leaf certificates with: made on first use in
//! the CA directory (`tcpspy-ca.pem`, the certificate users trust, and `tcpspy-ca-key.pem`,
//! its key, mode 0600, in a directory of mode 0700), loaded as it is on later runs. Leaf
//! certificates are made for the names clients ask for (a DNS name or an IP address, one per
//! certificate), signed with ECDSA P-256, and kept: a name is signed once per run.
//!
//! `--tls-cert` and `--tls-key` replace the authority with one certificate served to every
//! client.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SerialNumber,
};
use rustls::crypto::ring::sign::any_supported_type;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;

/// The file users trust.
pub const CA_CERT: &str = "tcpspy-ca.pem";
/// Its key.
pub const CA_KEY: &str = "tcpspy-ca-key.pem";
/// Names whose certificates are kept; past it the cache starts again (a crawler's many hosts
/// must not grow memory without bound).
const CACHE: usize = 4096;
/// A leaf is valid from a day before it was made (clocks disagree) for this many days (below
/// the 398 days browsers accept).
const LEAF_DAYS: i64 = 365;

/// The certificates tcpspy shows clients.
pub enum Certs {
    /// Made for each name, signed by the authority.
    Authority(Box<Authority>),
    /// `--tls-cert`: this one for everyone.
    Fixed(Arc<CertifiedKey>),
}

impl Certs {
    /// The certificate for `name` (the client's SNI, else the target's name or address).
    pub fn for_name(&mut self, name: &str) -> Result<Arc<CertifiedKey>, String> {
        match self {
            Certs::Authority(a) => a.leaf(name),
            Certs::Fixed(k) => Ok(k.clone()),
        }
    }

    /// The file the user must trust, if tcpspy signs its own.
    pub fn ca_path(&self) -> Option<&Path> {
        match self {
            Certs::Authority(a) => Some(&a.cert_path),
            Certs::Fixed(_) => None,
        }
    }
}

pub struct Authority {
    issuer: Issuer<'static, KeyPair>,
    der: CertificateDer<'static>,
    pub cert_path: PathBuf,
    /// Made on this run (the start-up line says so).
    pub created: bool,
    leaves: HashMap<String, Arc<CertifiedKey>>,
    serial: u64,
}

/// The CA directory by default: `$XDG_CONFIG_HOME/tcpspy`, else `~/.config/tcpspy`.
pub fn default_dir() -> Option<PathBuf> {
    let base = match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        Some(x) => PathBuf::from(x),
        None => PathBuf::from(std::env::var_os("HOME").filter(|v| !v.is_empty())?).join(".config"),
    };
    Some(base.join("tcpspy"))
}

impl Authority {
    /// Loads the authority from `dir`, or makes it there if it has none.
    pub fn load_or_create(dir: &Path) -> Result<Authority, String> {
        let cert_path = dir.join(CA_CERT);
        let key_path = dir.join(CA_KEY);
        let shown = |p: &Path| p.display().to_string();
        if cert_path.exists() || key_path.exists() {
            let cert = fs::read_to_string(&cert_path)
                .map_err(|e| format!("cannot read {}: {e}", shown(&cert_path)))?;
            let key = fs::read_to_string(&key_path)
                .map_err(|e| format!("cannot read {}: {e}", shown(&key_path)))?;
            let key = KeyPair::from_pem(&key)
                .map_err(|e| format!("{}: not a private key: {e}", shown(&key_path)))?;
            let der = CertificateDer::from_pem_slice(cert.as_bytes())
                .map_err(|e| format!("{}: not a certificate: {e}", shown(&cert_path)))?;
            let issuer = Issuer::from_ca_cert_der(&der, key)
                .map_err(|e| format!("{}: not a CA certificate: {e}", shown(&cert_path)))?;
            return Ok(Authority {
                issuer,
                der,
                cert_path,
                created: false,
                leaves: HashMap::new(),
                serial: 0,
            });
        }
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("cannot create the CA directory {}: {e}", shown(dir)))?;
        let key = KeyPair::generate().map_err(|e| format!("cannot make a CA key: {e}"))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "tcpspy CA");
        params
            .distinguished_name
            .push(DnType::OrganizationName, "tcpspy");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let (from, _) = validity(-1, 3650);
        params.not_before = from;
        params.not_after = validity(0, 3650).1;
        let cert = params
            .self_signed(&key)
            .map_err(|e| format!("cannot make the CA certificate: {e}"))?;
        write_new(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
        write_new(&cert_path, cert.pem().as_bytes(), 0o644)?;
        let der = cert.der().clone();
        Ok(Authority {
            issuer: Issuer::new(params, key),
            der,
            cert_path,
            created: true,
            leaves: HashMap::new(),
            serial: 0,
        })
    }

    /// The leaf for `name`, made now if it was not yet.
    pub fn leaf(&mut self, name: &str) -> Result<Arc<CertifiedKey>, String> {
        if let Some(k) = self.leaves.get(name) {
            return Ok(k.clone());
        }
        let key = KeyPair::generate().map_err(|e| format!("cannot make a key: {e}"))?;
        let mut params = CertificateParams::new(vec![name.to_string()])
            .map_err(|e| format!("cannot make a certificate for {name:?}: {e}"))?;
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "tcpspy");
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let (from, to) = validity(-1, LEAF_DAYS);
        params.not_before = from;
        params.not_after = to;
        self.serial = self.serial.wrapping_add(1);
        params.serial_number = Some(serial(self.serial));
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|e| format!("cannot sign a certificate for {name:?}: {e}"))?;
        let private = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let signing = any_supported_type(&private).map_err(|e| format!("leaf key: {e}"))?;
        let certified = Arc::new(CertifiedKey::new(
            vec![cert.der().clone(), self.der.clone()],
            signing,
        ));
        if self.leaves.len() >= CACHE {
            self.leaves.clear();
        }
        self.leaves.insert(name.to_string(), certified.clone());
        Ok(certified)
    }
}

/// `--tls-cert FILE --tls-key FILE`: the chain and key served to every client.
pub fn load_fixed(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("--tls-cert {}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("--tls-cert {}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "--tls-cert {}: no certificate in it",
            cert.display()
        ));
    }
    let private = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("--tls-key {}: {e}", key.display()))?;
    let signing =
        any_supported_type(&private).map_err(|e| format!("--tls-key {}: {e}", key.display()))?;
    Ok(Arc::new(CertifiedKey::new(chain, signing)))
}

/// A serial number unique to this run and leaf: the time the run began and a count.
fn serial(n: u64) -> SerialNumber {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut bytes = [0u8; 16];
    bytes[0] = 0x01; // positive, and never a leading zero byte
    bytes[1..8].copy_from_slice(&t.to_be_bytes()[1..]);
    bytes[8..].copy_from_slice(&n.to_be_bytes());
    SerialNumber::from_slice(&bytes)
}

/// From `from_days` days from now to `days` days from now.
fn validity(from_days: i64, days: i64) -> (time::OffsetDateTime, time::OffsetDateTime) {
    let now = chrono::Utc::now();
    let at = |d: i64| {
        let t = now
            .checked_add_signed(chrono::TimeDelta::days(d))
            .unwrap_or(now);
        use chrono::Datelike;
        rcgen::date_time_ymd(t.year(), t.month() as u8, t.day() as u8)
    };
    (at(from_days), at(days))
}

/// Writes a file that must not exist yet, with `mode`.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), String> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    f.write_all(bytes)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn made_once_then_loaded_and_leaves_cached() {
        let dir = tempfile::tempdir().unwrap();
        let ca_dir = dir.path().join("ca");
        let mut a = Authority::load_or_create(&ca_dir).unwrap();
        assert!(a.created);
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&ca_dir.join(CA_KEY)), 0o600);
        assert_eq!(mode(&ca_dir), 0o700);
        let leaf = a.leaf("example.com").unwrap();
        assert_eq!(leaf.cert.len(), 2, "the leaf and the CA");
        assert!(Arc::ptr_eq(&leaf, &a.leaf("example.com").unwrap()));
        a.leaf("127.0.0.1").unwrap();
        let again = Authority::load_or_create(&ca_dir).unwrap();
        assert!(!again.created);
        assert_eq!(again.der, a.der);
    }

    #[test]
    fn a_damaged_key_is_one_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        Authority::load_or_create(dir.path()).unwrap();
        fs::write(dir.path().join(CA_KEY), "junk").unwrap();
        let e = Authority::load_or_create(dir.path()).err().unwrap();
        assert!(e.contains("not a private key"), "{e}");
    }
}
