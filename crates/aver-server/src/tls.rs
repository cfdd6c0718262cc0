//! TLS for the listener: operator-provided PEM files, or a self-signed
//! certificate generated once into the data directory.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};

/// Where the TLS files in force live.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// True when Aver generated them (the certificate is then also the CA a
    /// client must trust).
    pub generated: bool,
}

/// Returns the configured TLS files, or generates a self-signed certificate
/// into `data_dir/tls/` (kept across restarts) with SANs for the listen
/// address, `localhost`, 127.0.0.1 and the issuer's host.
pub fn ensure_tls_files(
    data_dir: &Path,
    cert: Option<&Path>,
    key: Option<&Path>,
    listen: SocketAddr,
    issuer: &str,
) -> Result<TlsFiles, String> {
    if let (Some(cert), Some(key)) = (cert, key) {
        return Ok(TlsFiles {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            generated: false,
        });
    }
    if cert.is_some() != key.is_some() {
        return Err("give both --tls-cert and --tls-key, or neither".into());
    }
    let dir = data_dir.join("tls");
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    if cert_path.exists() && key_path.exists() {
        return Ok(TlsFiles {
            cert: cert_path,
            key: key_path,
            generated: true,
        });
    }
    crate::datadir::prepare(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let key = KeyPair::generate().map_err(|e| e.to_string())?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "Aver attestation service (self-signed)");
    params.distinguished_name = dn;
    let mut sans = vec![
        SanType::DnsName("localhost".try_into().map_err(|e| format!("{e}"))?),
        SanType::IpAddress(IpAddr::from([127, 0, 0, 1])),
    ];
    if !listen.ip().is_unspecified() && !listen.ip().is_loopback() {
        sans.push(SanType::IpAddress(listen.ip()));
    }
    if let Some(host) = issuer_host(issuer) {
        match host.parse::<IpAddr>() {
            Ok(ip) if !sans.contains(&SanType::IpAddress(ip)) => sans.push(SanType::IpAddress(ip)),
            Ok(_) => {}
            Err(_) if host != "localhost" => {
                if let Ok(name) = host.to_string().try_into() {
                    sans.push(SanType::DnsName(name));
                }
            }
            Err(_) => {}
        }
    }
    params.subject_alt_names = sans;
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2049, 12, 31);
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    write_private(&key_path, key.serialize_pem().as_bytes())?;
    // Public, but owner-only like everything in the data directory.
    write_private(&cert_path, cert.pem().as_bytes())?;
    Ok(TlsFiles {
        cert: cert_path,
        key: key_path,
        generated: true,
    })
}

fn issuer_host(issuer: &str) -> Option<&str> {
    let rest = issuer.split_once("://")?.1;
    let authority = rest.split('/').next()?;
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split(']').next();
    }
    Some(authority.rsplit_once(':').map_or(authority, |(h, _)| h))
}

/// Writes a file readable only by its owner.
pub fn write_private(path: &Path, data: &[u8]) -> Result<(), String> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .map_err(|e| format!("write {}: {e}", path.display()))?;
    file.write_all(data)
        .and_then(|_| file.sync_all())
        .map_err(|e| format!("write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::issuer_host;

    #[test]
    fn issuer_host_parsing() {
        assert_eq!(issuer_host("https://127.0.0.1:8443"), Some("127.0.0.1"));
        assert_eq!(
            issuer_host("https://aver.example.com/x"),
            Some("aver.example.com")
        );
        assert_eq!(issuer_host("https://[::1]:8443"), Some("::1"));
        assert_eq!(issuer_host("nonsense"), None);
    }
}
