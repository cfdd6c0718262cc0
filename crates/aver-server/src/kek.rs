//! Keys at rest: the key-encryption key (KEK) that seals token-signing keys
//! and provider secrets (TPM context key, AK CA) before they reach the
//! store.
//!
//! A sealed record is `AVERKEK1 || kek-id (8) || nonce (12) || AES-256-GCM
//! ciphertext and tag`, with a random nonce per seal (aws-lc-rs
//! `RandomizedNonceKey`) and the record's identity as additional
//! authenticated data (`signing-key/<provider>/<kid>`,
//! `secret/<provider>/<name>`), so a sealed blob copied to another row or
//! provider does not open. The KEK id is the first 8 bytes of
//! SHA-256("aver kek id" || KEK): it tells "encrypted under another KEK"
//! apart from "altered", and reveals nothing usable about a 256-bit key.
//!
//! Plaintext records written by earlier versions are recognised (a PKCS#8
//! key starts with `0x30`, the TPM context key is exactly 32 bytes, the AK
//! CA blob starts with a 4-byte big-endian length, i.e. `0x00`), and are
//! sealed in place at start ([`crate::load::Loader::load`]).
//!
//! Where the KEK comes from is decided by [`resolve`]:
//! * `--kek-file FILE` (or `AVER_KEK_FILE`), or the `AVER_KEK` environment
//!   variable: base64 of 32 random bytes (`openssl rand -base64 32`);
//! * neither, with SQLite: `<data dir>/kek`, generated (owner-only) at the
//!   first start with a warning. This keeps a single-machine `aver serve`
//!   zero-configuration while still protecting copies of `aver.db`
//!   (backups, dumps) that travel without the KEK; it does not protect
//!   against someone who can read the whole data directory, which is why
//!   the warning says to move it out (a secrets mount, a systemd
//!   credential);
//! * neither, with PostgreSQL: start-up is refused. The database is shared
//!   and usually remote: a KEK generated on one machine would leave the
//!   other replicas unable to sign, and keys in a remote database under a
//!   key nobody chose is not a configuration anyone should drift into.
//!
//! A configured KEK that does not open the stored records, or a missing
//! `<data dir>/kek` when sealed records exist, is a start-up error: never a
//! silent new key.
//!
//! **Rotating the KEK** without stopping the service: besides the KEK in
//! force (which seals), a service may be given *accepted* KEKs
//! (`--accept-kek-file`), which only open. The rotation:
//! 1. every replica runs with the old KEK in force and the new one
//!    accepted;
//! 2. every replica, one by one, with the new KEK in force and the old one
//!    accepted (what a switched replica seals, the others can open);
//! 3. `aver keys rewrap` (same KEK options, against the store) re-seals
//!    every record under the KEK in force, each swap a compare-and-swap on
//!    the stored bytes, and reports what is left under other KEKs;
//! 4. the old KEK is dropped from the configuration.
//!
//! Loading never re-seals a record found under an accepted KEK: during
//! step 2, replicas with either KEK in force would re-seal the same record
//! back and forth.

use std::path::{Path, PathBuf};

use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};

/// First bytes of every sealed record.
pub const MAGIC: &[u8; 8] = b"AVERKEK1";
const ID_LEN: usize = 8;
const HEADER_LEN: usize = MAGIC.len() + ID_LEN + NONCE_LEN;
/// AES-GCM tag length: a sealed record is at least 44 bytes.
const TAG_LEN: usize = 16;
/// Environment variable holding the KEK itself (base64).
pub const KEK_ENV: &str = "AVER_KEK";
/// File name of the generated KEK in the data directory.
pub const DATA_DIR_KEK: &str = "kek";

/// Where the KEK comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum KekSource {
    /// A file holding base64 of 32 bytes.
    File(PathBuf),
    /// The base64 text itself (from `AVER_KEK`).
    Value(String),
}

impl std::fmt::Debug for KekSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KekSource::File(p) => f.debug_tuple("File").field(p).finish(),
            KekSource::Value(_) => f.write_str("Value(<redacted>)"),
        }
    }
}

/// Why a record could not be sealed or opened, or a KEK not loaded.
#[derive(Debug, thiserror::Error)]
pub enum KekError {
    #[error(
        "the KEK must be base64 of exactly 32 bytes (generate one with `openssl rand -base64 32`)"
    )]
    Malformed,
    #[error(
        "{what} is encrypted under KEK {stored} but the configured KEK is {configured}: start with the KEK the store was encrypted under"
    )]
    WrongKek {
        what: String,
        stored: String,
        configured: String,
    },
    #[error(
        "{what} does not decrypt under the configured KEK: the record was altered or copied from another row"
    )]
    Corrupt { what: String },
    #[error("encryption failed")]
    Seal,
}

/// The key-encryption key.
pub struct Kek {
    key: RandomizedNonceKey,
    id: [u8; ID_LEN],
    /// KEKs that open records but never seal (a KEK being rotated in or
    /// out); see the module documentation.
    accepted: Vec<Kek>,
}

/// How a stored record was held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sealing {
    /// Sealed under the KEK in force.
    Current,
    /// Sealed under an accepted KEK (its id): to be re-sealed.
    Accepted(String),
    /// Plaintext, written before keys were encrypted: to be sealed.
    Plaintext,
}

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kek").field("id", &self.id()).finish()
    }
}

impl Kek {
    /// A KEK from its 32 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KekError> {
        if bytes.len() != 32 {
            return Err(KekError::Malformed);
        }
        let key = RandomizedNonceKey::new(&AES_256_GCM, bytes).map_err(|_| KekError::Malformed)?;
        let mut hash = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        hash.update(b"aver kek id");
        hash.update(bytes);
        let digest = hash.finish();
        let mut id = [0u8; ID_LEN];
        id.copy_from_slice(digest.as_ref().get(..ID_LEN).ok_or(KekError::Malformed)?);
        Ok(Kek {
            key,
            id,
            accepted: Vec::new(),
        })
    }

    /// This KEK in force, with `accepted` KEKs that only open records.
    pub fn with_accepted(mut self, accepted: Vec<Kek>) -> Self {
        self.accepted = accepted
            .into_iter()
            .filter(|k| k.id != self.id)
            .map(|mut k| {
                k.accepted.clear();
                k
            })
            .collect();
        self
    }

    /// The ids of the accepted KEKs.
    pub fn accepted_ids(&self) -> Vec<String> {
        self.accepted.iter().map(Kek::id).collect()
    }

    /// A KEK from base64 text (standard or URL alphabet, padding optional,
    /// surrounding whitespace ignored).
    pub fn parse(text: &str) -> Result<Self, KekError> {
        let text = text.trim();
        let bytes = aver_token::b64::decode_lenient(text).ok_or(KekError::Malformed)?;
        Self::from_bytes(&bytes)
    }

    /// A new random KEK and its base64 text.
    pub fn generate() -> Result<(Self, String), KekError> {
        let mut bytes = [0u8; 32];
        aws_lc_rs::rand::fill(&mut bytes).map_err(|_| KekError::Seal)?;
        let text = aver_token::b64::encode_std(&bytes);
        Ok((Self::from_bytes(&bytes)?, text))
    }

    /// The KEK's public identifier (hex), shown in errors and `aver keys list`.
    pub fn id(&self) -> String {
        hex::encode(self.id)
    }

    /// Seals `plaintext` for the record named by `aad`.
    pub fn seal(&self, aad: &str, plaintext: &[u8]) -> Result<Vec<u8>, KekError> {
        let mut body = plaintext.to_vec();
        let nonce = self
            .key
            .seal_in_place_append_tag(Aad::from(aad.as_bytes()), &mut body)
            .map_err(|_| KekError::Seal)?;
        let mut out = Vec::with_capacity(HEADER_LEN + body.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.id);
        out.extend_from_slice(nonce.as_ref());
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Opens a sealed record, under the KEK in force or an accepted one;
    /// `what` names it in errors.
    pub fn open(&self, aad: &str, sealed: &[u8], what: &str) -> Result<Vec<u8>, KekError> {
        self.open_sealed(aad, sealed, what).map(|(plain, _)| plain)
    }

    /// [`Kek::open`], also saying which KEK opened it.
    fn open_sealed(
        &self,
        aad: &str,
        sealed: &[u8],
        what: &str,
    ) -> Result<(Vec<u8>, Sealing), KekError> {
        let corrupt = || KekError::Corrupt { what: what.into() };
        let stored_id = sealed_kek_id(sealed).ok_or_else(corrupt)?;
        let (kek, sealing) = if stored_id == self.id {
            (self, Sealing::Current)
        } else {
            match self.accepted.iter().find(|k| k.id == stored_id) {
                Some(k) => (k, Sealing::Accepted(k.id())),
                None => {
                    let mut configured = self.id();
                    for id in self.accepted_ids() {
                        configured.push_str(&format!(" (or accepted {id})"));
                    }
                    return Err(KekError::WrongKek {
                        what: what.into(),
                        stored: hex::encode(stored_id),
                        configured,
                    });
                }
            }
        };
        let nonce = sealed
            .get(MAGIC.len() + ID_LEN..HEADER_LEN)
            .and_then(|n| Nonce::try_assume_unique_for_key(n).ok())
            .ok_or_else(corrupt)?;
        let mut body = sealed.get(HEADER_LEN..).ok_or_else(corrupt)?.to_vec();
        let plain = kek
            .key
            .open_in_place(nonce, Aad::from(aad.as_bytes()), &mut body)
            .map_err(|_| corrupt())?;
        Ok((plain.to_vec(), sealing))
    }

    /// The plaintext of a record, and how it was held: under the KEK in
    /// force, under an accepted KEK, or still in plaintext (written before
    /// keys were encrypted). The last two are for the caller to re-seal.
    pub fn open_or_legacy(
        &self,
        aad: &str,
        stored: &[u8],
        what: &str,
    ) -> Result<(Vec<u8>, Sealing), KekError> {
        if is_sealed(stored) {
            self.open_sealed(aad, stored, what)
        } else {
            Ok((stored.to_vec(), Sealing::Plaintext))
        }
    }
}

/// Whether a stored value is a sealed record (see the module documentation
/// for why no plaintext record starts this way).
pub fn is_sealed(stored: &[u8]) -> bool {
    stored.len() >= HEADER_LEN + TAG_LEN && stored.starts_with(MAGIC)
}

/// The KEK id a sealed record names.
pub fn sealed_kek_id(sealed: &[u8]) -> Option<[u8; ID_LEN]> {
    if !is_sealed(sealed) {
        return None;
    }
    sealed
        .get(MAGIC.len()..MAGIC.len() + ID_LEN)?
        .try_into()
        .ok()
}

/// AAD of a token-signing key.
pub fn key_aad(provider: &str, kid: &str) -> String {
    format!("signing-key/{provider}/{kid}")
}

/// AAD of a provider secret.
pub fn secret_aad(provider: &str, name: &str) -> String {
    format!("secret/{provider}/{name}")
}

/// Whether the store holds any sealed record (then a KEK must be supplied,
/// never generated).
pub fn store_has_sealed(store: &dyn crate::store::Store) -> Result<bool, crate::store::StoreError> {
    for p in store.providers()? {
        if store
            .signing_keys(&p.name)?
            .iter()
            .any(|k| is_sealed(&k.pkcs8))
        {
            return Ok(true);
        }
        if store.secrets(&p.name)?.iter().any(|(_, v)| is_sealed(v)) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The KEK in force (see the module documentation for the rules).
pub fn resolve(
    source: Option<&KekSource>,
    data_dir: &Path,
    shared_database: bool,
    store: &dyn crate::store::Store,
) -> Result<Kek, String> {
    resolve_with_accepted(source, &[], data_dir, shared_database, store)
}

/// [`resolve`], with KEKs that only open records (`--accept-kek-file`).
pub fn resolve_with_accepted(
    source: Option<&KekSource>,
    accepted: &[PathBuf],
    data_dir: &Path,
    shared_database: bool,
    store: &dyn crate::store::Store,
) -> Result<Kek, String> {
    let accepted = accepted
        .iter()
        .map(|p| read_kek_file(p))
        .collect::<Result<Vec<_>, _>>()?;
    if !accepted.is_empty() && source.is_none() && shared_database {
        return Err(shared_database_needs_kek());
    }
    resolve_current(source, data_dir, shared_database, store).map(|k| k.with_accepted(accepted))
}

fn resolve_current(
    source: Option<&KekSource>,
    data_dir: &Path,
    shared_database: bool,
    store: &dyn crate::store::Store,
) -> Result<Kek, String> {
    match source {
        Some(KekSource::Value(text)) => Kek::parse(text).map_err(|e| format!("{KEK_ENV}: {e}")),
        Some(KekSource::File(path)) => read_kek_file(path),
        None if shared_database => Err(shared_database_needs_kek()),
        None => {
            let path = data_dir.join(DATA_DIR_KEK);
            if path.exists() {
                return read_kek_file(&path);
            }
            if store_has_sealed(store).map_err(|e| e.to_string())? {
                return Err(format!(
                    "the store holds encrypted keys but no KEK was given and {} does not exist: \
                     start with the KEK they were encrypted under (--kek-file or {KEK_ENV}); \
                     refusing to generate a new one",
                    path.display()
                ));
            }
            let (kek, text) = Kek::generate().map_err(|e| e.to_string())?;
            crate::tls::write_private(&path, format!("{text}\n").as_bytes())?;
            tracing::warn!(
                path = %path.display(),
                kek = %kek.id(),
                "no KEK configured: generated one next to the database; it protects copies of \
                 the database but not the data directory itself. Move it out of the data \
                 directory and pass --kek-file (or AVER_KEK) to keep keys at rest apart from it"
            );
            Ok(kek)
        }
    }
}

/// What [`rewrap`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RewrapReport {
    /// The KEK in force, which now seals every record it could open.
    pub kek: String,
    /// Records re-sealed from an accepted KEK (or sealed from plaintext).
    pub resealed: usize,
    /// Records already under the KEK in force.
    pub current: usize,
    /// Records changed by someone else between reading and swapping (a
    /// replica writing a new key): run `rewrap` again.
    pub raced: usize,
    /// Records under a KEK that is neither in force nor accepted:
    /// `provider/record: kek id`.
    pub unopenable: Vec<String>,
}

/// Step 3 of a KEK rotation (module documentation): re-seals every signing
/// key and provider secret of every provider under the KEK in force,
/// opening them with it or an accepted KEK. Each swap is a compare-and-swap
/// on the stored bytes, so a record rewritten meanwhile is left (and
/// counted) rather than overwritten. A record this KEK set cannot open is
/// reported, never changed.
pub fn rewrap(kek: &Kek, store: &dyn crate::store::Store) -> Result<RewrapReport, String> {
    let mut report = RewrapReport {
        kek: kek.id(),
        ..RewrapReport::default()
    };
    let mut one = |what: String,
                   aad: String,
                   stored: &[u8],
                   swap: &dyn Fn(&[u8]) -> Result<bool, crate::store::StoreError>|
     -> Result<(), String> {
        match kek.open_or_legacy(&aad, stored, &what) {
            Ok((_, Sealing::Current)) => report.current += 1,
            Ok((plain, _)) => {
                let new = kek.seal(&aad, &plain).map_err(|e| e.to_string())?;
                if swap(&new).map_err(|e| e.to_string())? {
                    report.resealed += 1;
                } else {
                    report.raced += 1;
                }
            }
            Err(KekError::WrongKek { stored, .. }) => {
                report.unopenable.push(format!("{what}: KEK {stored}"));
            }
            Err(e) => return Err(e.to_string()),
        }
        Ok(())
    };
    for p in store.providers().map_err(|e| e.to_string())? {
        let provider = p.name;
        for k in store.signing_keys(&provider).map_err(|e| e.to_string())? {
            one(
                format!("{provider}/signing key {}", k.kid),
                key_aad(&provider, &k.kid),
                &k.pkcs8,
                &|new| store.replace_key_material(&provider, &k.kid, &k.pkcs8, new),
            )?;
        }
        for (name, value) in store.secrets(&provider).map_err(|e| e.to_string())? {
            one(
                format!("{provider}/secret {name}"),
                secret_aad(&provider, &name),
                &value,
                &|new| store.replace_secret(&provider, &name, &value, new),
            )?;
        }
    }
    Ok(report)
}

/// The refusal to start over PostgreSQL without a KEK.
pub fn shared_database_needs_kek() -> String {
    format!(
        "a PostgreSQL store needs a key-encryption key shared by every replica: give --kek-file FILE \
         (or AVER_KEK_FILE) or set {KEK_ENV} to base64 of 32 random bytes (`openssl rand -base64 32`)"
    )
}

fn read_kek_file(path: &Path) -> Result<Kek, String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                path = %path.display(),
                mode = format!("{:o}", meta.permissions().mode() & 0o777),
                "the KEK file is readable by other users; make it 0600 (or 0400)"
            );
        }
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("reading the KEK file {}: {e}", path.display()))?;
    Kek::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn seal_open_round_trip_and_binding() {
        let (kek, text) = Kek::generate().unwrap();
        let again = Kek::parse(&text).unwrap();
        assert_eq!(kek.id(), again.id());
        let sealed = kek.seal("signing-key/a/k1", b"secret").unwrap();
        assert!(is_sealed(&sealed));
        assert_eq!(
            again.open("signing-key/a/k1", &sealed, "k1").unwrap(),
            b"secret"
        );
        // Another record's identity does not open it.
        assert!(matches!(
            kek.open("signing-key/b/k1", &sealed, "k1"),
            Err(KekError::Corrupt { .. })
        ));
        // Random nonce: two seals differ.
        assert_ne!(sealed, kek.seal("signing-key/a/k1", b"secret").unwrap());
        // A flipped bit is detected.
        let mut bad = sealed.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(matches!(
            kek.open("signing-key/a/k1", &bad, "k1"),
            Err(KekError::Corrupt { .. })
        ));
        // Truncations never panic.
        for n in 0..sealed.len() {
            assert!(kek.open("signing-key/a/k1", &sealed[..n], "k1").is_err());
        }
        // Another KEK is named as such.
        let (other, other_text) = Kek::generate().unwrap();
        assert!(matches!(
            other.open("signing-key/a/k1", &sealed, "k1"),
            Err(KekError::WrongKek { .. })
        ));
        // Accepted, it opens the record and says it must be re-sealed.
        let rotating = other.with_accepted(vec![Kek::parse(&text).unwrap()]);
        let (plain, how) = rotating
            .open_or_legacy("signing-key/a/k1", &sealed, "k1")
            .unwrap();
        assert_eq!(plain, b"secret");
        assert_eq!(how, Sealing::Accepted(kek.id()));
        // What it seals, only the KEK in force opens (and the old one,
        // accepting the new, during the rotation's first step).
        let resealed = rotating.seal("signing-key/a/k1", b"secret").unwrap();
        assert!(matches!(
            kek.open("signing-key/a/k1", &resealed, "k1"),
            Err(KekError::WrongKek { .. })
        ));
        let first_step = Kek::parse(&text)
            .unwrap()
            .with_accepted(vec![Kek::parse(&other_text).unwrap()]);
        assert_eq!(
            first_step
                .open_or_legacy("signing-key/a/k1", &resealed, "k1")
                .unwrap()
                .1,
            Sealing::Accepted(rotating.id())
        );
        assert_eq!(
            rotating
                .open_or_legacy("signing-key/a/k1", &resealed, "k1")
                .unwrap()
                .1,
            Sealing::Current
        );
    }

    #[test]
    fn kek_text_must_be_32_bytes() {
        assert!(Kek::parse("c2hvcnQ=").is_err());
        assert!(Kek::parse("not base64 !").is_err());
        assert!(Kek::parse(&aver_token::b64::encode_url(&[7u8; 32])).is_ok());
    }

    #[test]
    fn plaintext_records_are_not_mistaken_for_sealed_ones() {
        assert!(!is_sealed(&[0x30, 0x82, 1, 2]));
        assert!(!is_sealed(&[0, 0, 3, 0x30]));
        assert!(!is_sealed(&[0x41; 32]));
    }
}
