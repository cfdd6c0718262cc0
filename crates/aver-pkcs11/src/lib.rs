//! Token-signing keys held in a PKCS#11 token (an HSM; SoftHSM2 in tests).
//!
//! The private key never enters Aver's memory: Aver finds the key in the
//! token by an RFC 7512 URI, reads its public part, and asks the token for
//! each signature (`C_Sign` with `CKM_SHA256_RSA_PKCS` for RS256,
//! `CKM_ECDSA` over a SHA-256 digest for ES256). The key's certificate (for `x5c` and the
//! `kid`) is self-signed once, at import, by the token itself, and stored
//! next to the reference in Aver's store, so every replica publishes the
//! same certificate.
//!
//! This crate is separate so that `aver-token` carries no module-loading
//! code and builds without PKCS#11 support leave it out entirely.

mod uri;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use aver_token::{KeyAlg, RemoteSigner};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use sha2::{Digest, Sha256};

pub use uri::{Pkcs11Uri, UriError};

/// Environment variable naming the PKCS#11 module on this machine; it takes
/// precedence over the URI's `module-path`, so replicas may install the
/// module in different places.
pub const MODULE_ENV: &str = "AVER_PKCS11_MODULE";

/// DER of the P-256 curve OID (1.2.840.10045.3.1.7), as `CKA_EC_PARAMS`.
const P256_PARAMS: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

/// Why a token key could not be opened or used.
#[derive(Debug, thiserror::Error)]
pub enum Pkcs11Error {
    #[error(transparent)]
    Uri(#[from] UriError),
    #[error(
        "no PKCS#11 module: give the URI a module-path attribute (aver keys import-hsm --module) or set {MODULE_ENV}"
    )]
    NoModule,
    #[error("cannot load the PKCS#11 module {path}: {detail}")]
    Module { path: String, detail: String },
    #[error(
        "no PKCS#11 token matches {0} (check the token label/serial and that the module sees it)"
    )]
    NoToken(String),
    #[error("{0} matches more than one token: add serial= to the URI")]
    AmbiguousToken(String),
    #[error("cannot read the PIN from {path}: {detail}")]
    PinFile { path: String, detail: String },
    #[error("no PIN for {0}: add pin-source=file:/path (or pin-value) to the URI")]
    NoPin(String),
    #[error("login to {uri} failed: {detail}")]
    Login { uri: String, detail: String },
    #[error("no private key matches {0}")]
    NoKey(String),
    #[error("{0} matches more than one private key: add object= or id= to the URI")]
    AmbiguousKey(String),
    #[error("the key at {uri} is unsupported: {detail}")]
    Unsupported { uri: String, detail: String },
    #[error("PKCS#11 call failed for {uri}: {detail}")]
    Token { uri: String, detail: String },
}

/// A private key in a PKCS#11 token, used through one logged-in session.
/// Signatures are serialized through the session (a PKCS#11 session is not
/// safe for concurrent use).
pub struct TokenKey {
    uri: String,
    alg: KeyAlg,
    public_key: Vec<u8>,
    key: ObjectHandle,
    session: Mutex<Session>,
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKey")
            .field("uri", &self.uri)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

/// A shared [`TokenKey`] as a [`RemoteSigner`].
struct Shared(Arc<TokenKey>);

impl RemoteSigner for Shared {
    fn alg(&self) -> KeyAlg {
        self.0.alg
    }
    fn public_key(&self) -> &[u8] {
        &self.0.public_key
    }
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, String> {
        self.0.sign(message).map_err(|e| e.to_string())
    }
    fn describe(&self) -> String {
        self.0.uri.clone()
    }
}

impl TokenKey {
    /// The key's algorithm (from its type in the token).
    pub fn alg(&self) -> KeyAlg {
        self.alg
    }

    /// The URI, without any PIN value (safe to log).
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// Signs `message` in the JWS encoding of [`TokenKey::alg`].
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, Pkcs11Error> {
        // RSA: the token hashes (CKM_SHA256_RSA_PKCS, in every module).
        // ECDSA: Aver hashes and the token signs the digest (CKM_ECDSA):
        // CKM_ECDSA_SHA256 is missing from many modules, SoftHSM2 among
        // them. Either way only the public digest crosses the boundary.
        let digest;
        let (mechanism, data): (Mechanism, &[u8]) = match self.alg {
            KeyAlg::Rs256 => (Mechanism::Sha256RsaPkcs, message),
            KeyAlg::Es256 => {
                digest = Sha256::digest(message);
                (Mechanism::Ecdsa, digest.as_slice())
            }
        };
        let session = self.session.lock().map_err(|_| Pkcs11Error::Token {
            uri: self.uri.clone(),
            detail: "session lock poisoned".into(),
        })?;
        session
            .sign(&mechanism, self.key, data)
            .map_err(|e| Pkcs11Error::Token {
                uri: self.uri.clone(),
                detail: format!("C_Sign: {e}"),
            })
    }
}

/// Opens the key `uri` names (cached per URI for the life of the process,
/// so store reloads do not log in again), as a [`RemoteSigner`].
pub fn open_signer(uri: &str) -> Result<Box<dyn RemoteSigner>, Pkcs11Error> {
    Ok(Box::new(Shared(open(uri)?)))
}

/// Opens the key `uri` names, cached per URI.
pub fn open(uri: &str) -> Result<Arc<TokenKey>, Pkcs11Error> {
    static KEYS: OnceLock<Mutex<HashMap<String, Arc<TokenKey>>>> = OnceLock::new();
    let cache = KEYS.get_or_init(Default::default);
    if let Some(key) = cache.lock().ok().and_then(|c| c.get(uri).cloned()) {
        return Ok(key);
    }
    let key = Arc::new(open_uncached(&Pkcs11Uri::parse(uri)?)?);
    if let Ok(mut c) = cache.lock() {
        c.insert(uri.to_string(), Arc::clone(&key));
    }
    Ok(key)
}

/// The module for `uri`: [`MODULE_ENV`] first, then its `module-path`.
fn module_path(uri: &Pkcs11Uri) -> Result<PathBuf, Pkcs11Error> {
    if let Some(path) = std::env::var_os(MODULE_ENV).filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    uri.module_path
        .as_ref()
        .map(PathBuf::from)
        .ok_or(Pkcs11Error::NoModule)
}

/// One initialized context per module per process (`C_Initialize` may be
/// called once).
fn context(path: &Path) -> Result<Pkcs11, Pkcs11Error> {
    static MODULES: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();
    let modules = MODULES.get_or_init(Default::default);
    let mut modules = modules.lock().map_err(|_| Pkcs11Error::Module {
        path: path.display().to_string(),
        detail: "module table lock poisoned".into(),
    })?;
    if let Some(ctx) = modules.get(path) {
        return Ok(ctx.clone());
    }
    let fail = |e: CkError| Pkcs11Error::Module {
        path: path.display().to_string(),
        detail: e.to_string(),
    };
    let ctx = Pkcs11::new(path).map_err(fail)?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) => {}
        Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(fail(e)),
    }
    modules.insert(path.to_path_buf(), ctx.clone());
    Ok(ctx)
}

fn open_uncached(uri: &Pkcs11Uri) -> Result<TokenKey, Pkcs11Error> {
    let shown = uri.to_string_without_pin();
    let token_err = |what: &str, e: CkError| Pkcs11Error::Token {
        uri: shown.clone(),
        detail: format!("{what}: {e}"),
    };
    let ctx = context(&module_path(uri)?)?;
    let mut matching = Vec::new();
    for slot in ctx
        .get_slots_with_token()
        .map_err(|e| token_err("C_GetSlotList", e))?
    {
        let info = ctx
            .get_token_info(slot)
            .map_err(|e| token_err("C_GetTokenInfo", e))?;
        let label_ok = uri.token.as_deref().is_none_or(|t| info.label() == t);
        let serial_ok = uri
            .serial
            .as_deref()
            .is_none_or(|s| info.serial_number() == s);
        if label_ok && serial_ok {
            matching.push(slot);
        }
    }
    let slot = match matching.as_slice() {
        [] => return Err(Pkcs11Error::NoToken(shown)),
        [one] => *one,
        _ => return Err(Pkcs11Error::AmbiguousToken(shown)),
    };
    let pin = match (&uri.pin_source, &uri.pin_value) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path).map_err(|e| Pkcs11Error::PinFile {
                path: path.clone(),
                detail: e.to_string(),
            })?;
            text.trim_end_matches(['\n', '\r']).to_string()
        }
        (None, Some(value)) => value.clone(),
        (None, None) => return Err(Pkcs11Error::NoPin(shown)),
    };
    let session = ctx
        .open_ro_session(slot)
        .map_err(|e| token_err("C_OpenSession", e))?;
    match session.login(UserType::User, Some(&AuthPin::new(pin.into()))) {
        Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
        Err(e) => {
            return Err(Pkcs11Error::Login {
                uri: shown,
                detail: e.to_string(),
            });
        }
    }
    let mut template = vec![Attribute::Class(ObjectClass::PRIVATE_KEY)];
    let mut public_template = vec![Attribute::Class(ObjectClass::PUBLIC_KEY)];
    if let Some(label) = &uri.object {
        template.push(Attribute::Label(label.as_bytes().to_vec()));
        public_template.push(Attribute::Label(label.as_bytes().to_vec()));
    }
    if let Some(id) = &uri.id {
        template.push(Attribute::Id(id.clone()));
        public_template.push(Attribute::Id(id.clone()));
    }
    let keys = session
        .find_objects(&template)
        .map_err(|e| token_err("C_FindObjects", e))?;
    let key = match keys.as_slice() {
        [] => return Err(Pkcs11Error::NoKey(shown)),
        [one] => *one,
        _ => return Err(Pkcs11Error::AmbiguousKey(shown)),
    };
    let unsupported = |detail: String| Pkcs11Error::Unsupported {
        uri: shown.clone(),
        detail,
    };
    let key_type = session
        .get_attributes(key, &[AttributeType::KeyType])
        .map_err(|e| token_err("C_GetAttributeValue", e))?
        .into_iter()
        .find_map(|a| match a {
            Attribute::KeyType(t) => Some(t),
            _ => None,
        })
        .ok_or_else(|| unsupported("the token does not say the key's type".into()))?;
    let (alg, public_key) = if key_type == KeyType::RSA {
        let mut n = None;
        let mut e = None;
        for a in session
            .get_attributes(
                key,
                &[AttributeType::Modulus, AttributeType::PublicExponent],
            )
            .map_err(|err| token_err("C_GetAttributeValue", err))?
        {
            match a {
                Attribute::Modulus(v) => n = Some(v),
                Attribute::PublicExponent(v) => e = Some(v),
                _ => {}
            }
        }
        let (Some(n), Some(e)) = (n, e) else {
            return Err(unsupported(
                "the token does not reveal the RSA modulus and exponent".into(),
            ));
        };
        let bits = strip_zero(&n).len() * 8;
        if bits != 2048 && bits != 3072 {
            return Err(unsupported(format!(
                "RSA-{bits}: RS256 keys must be RSA-2048 or RSA-3072"
            )));
        }
        (
            KeyAlg::Rs256,
            rsa_public_key_der(&n, &e)
                .ok_or_else(|| unsupported("the RSA public key cannot be encoded".into()))?,
        )
    } else if key_type == KeyType::EC {
        // CKA_EC_POINT lives on the public key object.
        let public = session
            .find_objects(&public_template)
            .map_err(|e| token_err("C_FindObjects", e))?;
        let [public] = public.as_slice() else {
            return Err(unsupported(
                "an EC key needs exactly one matching public key object (same label/id) for its point"
                    .into(),
            ));
        };
        let mut params = None;
        let mut point = None;
        for a in session
            .get_attributes(*public, &[AttributeType::EcParams, AttributeType::EcPoint])
            .map_err(|e| token_err("C_GetAttributeValue", e))?
        {
            match a {
                Attribute::EcParams(v) => params = Some(v),
                Attribute::EcPoint(v) => point = Some(v),
                _ => {}
            }
        }
        if params.as_deref() != Some(P256_PARAMS) {
            return Err(unsupported("EC keys must be on P-256 (ES256)".into()));
        }
        let point = point
            .and_then(|p| ec_point(&p))
            .ok_or_else(|| unsupported("the EC point is not an uncompressed P-256 point".into()))?;
        (KeyAlg::Es256, point)
    } else {
        return Err(unsupported(format!(
            "key type {key_type}: only RSA and EC (P-256)"
        )));
    };
    Ok(TokenKey {
        uri: shown,
        alg,
        public_key,
        key,
        session: Mutex::new(session),
    })
}

fn strip_zero(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    bytes.get(start..).unwrap_or_default()
}

/// PKCS#1 `RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent
/// INTEGER }`, DER, as a certificate's `subjectPublicKey` carries it.
fn rsa_public_key_der(n: &[u8], e: &[u8]) -> Option<Vec<u8>> {
    use der::Encode as _;
    // der encodes a Vec as a SEQUENCE OF.
    let seq = vec![
        der::asn1::UintRef::new(n).ok()?,
        der::asn1::UintRef::new(e).ok()?,
    ];
    seq.to_der().ok()
}

/// `CKA_EC_POINT` is a DER OCTET STRING holding the point (some modules
/// return the bare point): the uncompressed 65-byte P-256 point.
fn ec_point(value: &[u8]) -> Option<Vec<u8>> {
    use der::Decode as _;
    let point = if value.len() == 65 && value.first() == Some(&4) {
        value.to_vec()
    } else {
        <&der::asn1::OctetStringRef>::from_der(value)
            .ok()?
            .as_bytes()
            .to_vec()
    };
    (point.len() == 65 && point.first() == Some(&4)).then_some(point)
}

/// Generates a key pair in the token `uri` names (label from `object`, id
/// from `id`), for set-up and tests where no `pkcs11-tool` is at hand:
/// RSA-2048 for RS256, P-256 for ES256. The private key is sensitive and
/// not extractable.
pub fn generate_key_pair(uri: &str, alg: KeyAlg) -> Result<(), Pkcs11Error> {
    let parsed = Pkcs11Uri::parse(uri)?;
    let shown = parsed.to_string_without_pin();
    let token_err = |what: &str, e: CkError| Pkcs11Error::Token {
        uri: shown.clone(),
        detail: format!("{what}: {e}"),
    };
    let ctx = context(&module_path(&parsed)?)?;
    let slot = ctx
        .get_slots_with_token()
        .map_err(|e| token_err("C_GetSlotList", e))?
        .into_iter()
        .find(|s| {
            ctx.get_token_info(*s)
                .is_ok_and(|i| parsed.token.as_deref().is_none_or(|t| i.label() == t))
        })
        .ok_or_else(|| Pkcs11Error::NoToken(shown.clone()))?;
    let pin = match (&parsed.pin_source, &parsed.pin_value) {
        (Some(path), _) => std::fs::read_to_string(path)
            .map_err(|e| Pkcs11Error::PinFile {
                path: path.clone(),
                detail: e.to_string(),
            })?
            .trim_end_matches(['\n', '\r'])
            .to_string(),
        (None, Some(v)) => v.clone(),
        (None, None) => return Err(Pkcs11Error::NoPin(shown)),
    };
    let session = ctx
        .open_rw_session(slot)
        .map_err(|e| token_err("C_OpenSession", e))?;
    match session.login(UserType::User, Some(&AuthPin::new(pin.into()))) {
        Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
        Err(e) => {
            return Err(Pkcs11Error::Login {
                uri: shown,
                detail: e.to_string(),
            });
        }
    }
    let mut common = vec![Attribute::Token(true)];
    if let Some(label) = &parsed.object {
        common.push(Attribute::Label(label.as_bytes().to_vec()));
    }
    if let Some(id) = &parsed.id {
        common.push(Attribute::Id(id.clone()));
    }
    let (mechanism, mut public) = match alg {
        KeyAlg::Rs256 => (
            Mechanism::RsaPkcsKeyPairGen,
            vec![
                Attribute::ModulusBits(2048.into()),
                Attribute::PublicExponent(vec![1, 0, 1]),
                Attribute::Verify(true),
            ],
        ),
        KeyAlg::Es256 => (
            Mechanism::EccKeyPairGen,
            vec![
                Attribute::EcParams(P256_PARAMS.to_vec()),
                Attribute::Verify(true),
            ],
        ),
    };
    public.extend(common.iter().cloned());
    let mut private = vec![
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Sign(true),
    ];
    private.extend(common);
    session
        .generate_key_pair(&mechanism, &public, &private)
        .map_err(|e| token_err("C_GenerateKeyPair", e))?;
    Ok(())
}
