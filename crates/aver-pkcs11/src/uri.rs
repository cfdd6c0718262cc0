//! RFC 7512 PKCS#11 URIs: the subset Aver needs to find one private key.
//!
//! `pkcs11:token=aver;object=signing?pin-source=file:/etc/aver/pin&module-path=/usr/lib/softhsm/libsofthsm2.so`
//!
//! Path attributes: `token` (label), `serial`, `object` (label), `id`
//! (bytes, percent-encoded), `type` (must be `private` if given). Query
//! attributes: `pin-source` (a file, `file:` URI or plain path),
//! `pin-value`, `module-path`. Unknown attributes are refused rather than
//! ignored, so a typo never selects a different key.

/// A parsed PKCS#11 URI.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Pkcs11Uri {
    pub token: Option<String>,
    pub serial: Option<String>,
    pub object: Option<String>,
    pub id: Option<Vec<u8>>,
    pub pin_source: Option<String>,
    pub pin_value: Option<String>,
    pub module_path: Option<String>,
}

impl std::fmt::Debug for Pkcs11Uri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_string_without_pin())
    }
}

/// Why a URI was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UriError {
    #[error("a PKCS#11 URI starts with \"pkcs11:\"")]
    Scheme,
    #[error("bad percent-encoding in the PKCS#11 URI")]
    Encoding,
    #[error(
        "PKCS#11 URI attribute {0:?} is not supported (token, serial, object, id, type=private; pin-source, pin-value, module-path)"
    )]
    Unknown(String),
    #[error("PKCS#11 URI attribute {0:?} is given twice")]
    Duplicate(String),
    #[error(
        "the PKCS#11 URI selects objects of type {0:?}: Aver needs the private key (type=private)"
    )]
    Type(String),
    #[error("the PKCS#11 URI names no key: give object= or id=")]
    NoObject,
}

fn decode(text: &str) -> Result<Vec<u8>, UriError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or(UriError::Encoding)?;
            let hex = std::str::from_utf8(hex).map_err(|_| UriError::Encoding)?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| UriError::Encoding)?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    Ok(out)
}

fn decode_str(text: &str) -> Result<String, UriError> {
    String::from_utf8(decode(text)?).map_err(|_| UriError::Encoding)
}

fn set<T>(slot: &mut Option<T>, name: &str, value: T) -> Result<(), UriError> {
    if slot.is_some() {
        return Err(UriError::Duplicate(name.to_string()));
    }
    *slot = Some(value);
    Ok(())
}

fn encode(bytes: &[u8]) -> String {
    let mut out = String::new();
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~/:".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Pkcs11Uri {
    pub fn parse(text: &str) -> Result<Self, UriError> {
        let rest = text
            .trim()
            .strip_prefix("pkcs11:")
            .ok_or(UriError::Scheme)?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let mut uri = Pkcs11Uri::default();
        for attr in path.split(';').filter(|a| !a.is_empty()) {
            let (name, value) = attr.split_once('=').unwrap_or((attr, ""));
            match name {
                "token" => set(&mut uri.token, name, decode_str(value)?)?,
                "serial" => set(&mut uri.serial, name, decode_str(value)?)?,
                "object" => set(&mut uri.object, name, decode_str(value)?)?,
                "id" => set(&mut uri.id, name, decode(value)?)?,
                "type" => {
                    if value != "private" {
                        return Err(UriError::Type(value.to_string()));
                    }
                }
                other => return Err(UriError::Unknown(other.to_string())),
            }
        }
        for attr in query.split('&').filter(|a| !a.is_empty()) {
            let (name, value) = attr.split_once('=').unwrap_or((attr, ""));
            match name {
                "pin-source" => {
                    let value = decode_str(value)?;
                    let path = value.strip_prefix("file:").unwrap_or(&value).to_string();
                    set(&mut uri.pin_source, name, path)?;
                }
                "pin-value" => set(&mut uri.pin_value, name, decode_str(value)?)?,
                "module-path" => set(&mut uri.module_path, name, decode_str(value)?)?,
                other => return Err(UriError::Unknown(other.to_string())),
            }
        }
        if uri.object.is_none() && uri.id.is_none() {
            return Err(UriError::NoObject);
        }
        Ok(uri)
    }

    /// The URI with `pin-value` replaced by `***`: safe for logs, errors
    /// and `aver keys list`.
    pub fn to_string_without_pin(&self) -> String {
        let mut path = Vec::new();
        if let Some(v) = &self.token {
            path.push(format!("token={}", encode(v.as_bytes())));
        }
        if let Some(v) = &self.serial {
            path.push(format!("serial={}", encode(v.as_bytes())));
        }
        if let Some(v) = &self.object {
            path.push(format!("object={}", encode(v.as_bytes())));
        }
        if let Some(v) = &self.id {
            let hex: String = v.iter().map(|b| format!("%{b:02X}")).collect();
            path.push(format!("id={hex}"));
        }
        let mut query = Vec::new();
        if let Some(v) = &self.pin_source {
            query.push(format!("pin-source=file:{}", encode(v.as_bytes())));
        }
        if self.pin_value.is_some() {
            query.push("pin-value=***".to_string());
        }
        if let Some(v) = &self.module_path {
            query.push(format!("module-path={}", encode(v.as_bytes())));
        }
        let mut out = format!("pkcs11:{}", path.join(";"));
        if !query.is_empty() {
            out.push('?');
            out.push_str(&query.join("&"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_rfc7512_examples() {
        let uri = Pkcs11Uri::parse(
            "pkcs11:token=My%20token;object=sign;id=%01%02;type=private?pin-source=file:/run/pin&module-path=/usr/lib/softhsm/libsofthsm2.so",
        )
        .unwrap();
        assert_eq!(uri.token.as_deref(), Some("My token"));
        assert_eq!(uri.object.as_deref(), Some("sign"));
        assert_eq!(uri.id.as_deref(), Some(&[1u8, 2][..]));
        assert_eq!(uri.pin_source.as_deref(), Some("/run/pin"));
        assert_eq!(
            uri.module_path.as_deref(),
            Some("/usr/lib/softhsm/libsofthsm2.so")
        );
        let secret = Pkcs11Uri::parse("pkcs11:object=k?pin-value=1234").unwrap();
        assert_eq!(secret.pin_value.as_deref(), Some("1234"));
        assert!(!secret.to_string_without_pin().contains("1234"));
        assert!(!format!("{secret:?}").contains("1234"));
    }

    #[test]
    fn refuses_what_it_cannot_honour() {
        assert_eq!(Pkcs11Uri::parse("object=k"), Err(UriError::Scheme));
        assert_eq!(Pkcs11Uri::parse("pkcs11:token=t"), Err(UriError::NoObject));
        assert_eq!(
            Pkcs11Uri::parse("pkcs11:object=k;slot-id=1"),
            Err(UriError::Unknown("slot-id".into()))
        );
        assert_eq!(
            Pkcs11Uri::parse("pkcs11:object=k;type=cert"),
            Err(UriError::Type("cert".into()))
        );
        assert_eq!(
            Pkcs11Uri::parse("pkcs11:object=%G1"),
            Err(UriError::Encoding)
        );
        assert_eq!(
            Pkcs11Uri::parse("pkcs11:object=%4"),
            Err(UriError::Encoding)
        );
        assert_eq!(
            Pkcs11Uri::parse("pkcs11:object=a;object=b"),
            Err(UriError::Duplicate("object".into()))
        );
    }
}
