//! Management from the command line, mirroring the Azure PowerShell
//! quickstart: `aver policy get|set|reset|sign` and `aver signer
//! list|add|remove`, over HTTPS with an admin credential. (`aver provider`
//! works on the store directly: [`crate::provider`].)

use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow, bail};
use aver_client::{AdminClient, Client};
use aver_token::SigningKey;
use clap::Args;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivatePkcs8KeyDer};

use crate::files;

/// Where the service is and how to authenticate.
#[derive(Args, Debug, Clone)]
pub struct Connection {
    /// Service base URL (for another provider: `https://host/providers/NAME`).
    #[arg(long, env = "AVER_URL")]
    pub url: String,
    /// CA certificate (PEM) for the service's TLS certificate.
    #[arg(long, env = "AVER_CA")]
    pub ca: Option<PathBuf>,
    /// Admin credential (an admin key, or an OIDC JWT), or `@FILE`.
    #[arg(long, env = "AVER_ADMIN_KEY")]
    pub admin_key: String,
    /// The service's public URL (its token issuer), when --url reaches it
    /// another way (a replica behind a load balancer) [default: the issuer
    /// the service's OpenID metadata names].
    #[arg(long, env = "AVER_ISSUER")]
    pub issuer: Option<String>,
}

impl Connection {
    pub fn admin(&self) -> Result<AdminClient> {
        let ca = self.ca.as_deref().map(files::read).transpose()?;
        let client = Client::new(&self.url, ca.as_deref())?;
        let key = match self.admin_key.strip_prefix('@') {
            Some(path) => files::read_text(Path::new(path))?,
            None => self.admin_key.clone(),
        };
        Ok(AdminClient::new(client, key.trim()).with_issuer(self.issuer.clone()))
    }
}

/// A policy signer's key and certificate.
#[derive(Args, Debug, Clone)]
pub struct SignerFiles {
    /// The signer's RSA private key (PKCS#8 PEM).
    #[arg(long = "signing-key", requires = "signing_cert")]
    pub signing_key: Option<PathBuf>,
    /// The signer's certificate (PEM).
    #[arg(long = "signing-cert", requires = "signing_key")]
    pub signing_cert: Option<PathBuf>,
}

impl SignerFiles {
    pub fn load(&self) -> Result<Option<SigningKey>> {
        let (Some(key), Some(cert)) = (&self.signing_key, &self.signing_cert) else {
            return Ok(None);
        };
        load_signer(key, cert).map(Some)
    }
}

/// Loads an RSA signer from PEM files (the key must match the certificate).
pub fn load_signer(key: &Path, cert: &Path) -> Result<SigningKey> {
    let key_pem = files::read(key)?;
    let pkcs8 = PrivatePkcs8KeyDer::from_pem_slice(&key_pem)
        .map_err(|e| anyhow!("{}: not a PKCS#8 PEM private key: {e}", key.display()))?;
    let cert_der = read_certificate(cert)?;
    SigningKey::from_parts(pkcs8.secret_pkcs8_der().to_vec(), cert_der)
        .map_err(|e| anyhow!("signer key and certificate: {e} (RSA keys are supported)"))
}

/// The first certificate of a PEM file (or a DER file).
pub fn read_certificate(path: &Path) -> Result<Vec<u8>> {
    let bytes = files::read(path)?;
    match CertificateDer::pem_slice_iter(&bytes).next() {
        Some(cert) => Ok(cert
            .map_err(|e| anyhow!("{}: {e}", path.display()))?
            .to_vec()),
        None => Ok(bytes),
    }
}

/// A policy file's JWS: sent as-is if it already is one, else built
/// (signed when a signer is given).
pub fn policy_jws(file: &Path, signer: Option<&SigningKey>) -> Result<String> {
    let text = files::read_text(file)?;
    if aver_token::CompactJws::parse(text.trim()).is_ok() {
        if signer.is_some() {
            bail!(
                "{} is already a JWS; give a policy text to sign",
                file.display()
            );
        }
        return Ok(text.trim().to_string());
    }
    Ok(match signer {
        Some(s) => aver_token::policy::signed(Some(&text), s)?,
        None => aver_token::policy::unsigned(Some(&text)),
    })
}

pub fn print_claims(claims: &aver_token::Claims) {
    files::print_json(&serde_json::Value::Object(claims.clone()));
}
