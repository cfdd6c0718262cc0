//! Attestation tokens and the keys that sign them.
//!
//! * [`jws`]: compact JWS parsing and signature verification (RS256, PS256,
//!   ES256, ES384, and the `RSA256` spelling Azure's SDKs send), plus RS256
//!   and ES256 signing. Framing (base64url, JSON header) is ours; every signature
//!   operation is aws-lc-rs.
//! * [`keys`]: RSA-2048 (default) or P-256 token-signing keys, each with a self-signed
//!   certificate whose CN is the issuer, as Azure Attestation publishes them.
//! * [`metadata`]: the JWKS (`/certs`) and OpenID configuration documents.
//! * [`relying_party`]: verifying a token as a relying party would, with the
//!   time as an input.
//!
//! This crate knows nothing about SGX or TPM: claims are a JSON object.

pub mod b64;
pub mod jws;
pub mod keys;
pub mod metadata;
pub mod policy;
pub mod relying_party;

pub use jws::{CompactJws, JwsAlg, JwsError};
pub use keys::{KeyAlg, KeyError, RemoteSigner, SigningKey};
pub use relying_party::{TokenError, VerifyOptions, verify_token};

/// Claims of a token: a JSON object.
pub type Claims = serde_json::Map<String, serde_json::Value>;
