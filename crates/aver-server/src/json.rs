//! JSON as Aver reads it from clients: `serde_json`, except that an object
//! with the same key twice is an error.
//!
//! RFC 8259 leaves duplicate names to the implementation, and parsers
//! disagree (first wins, last wins, error). A request whose meaning depends
//! on which parser reads it — a proxy or a log pipeline seeing one `quote`,
//! Aver another — is an attack surface, so Aver refuses it rather than
//! picking a winner. Request envelopes are also refused when two keys
//! differ only in ASCII case (`quote` and `Quote`), because Aver looks
//! fields up ignoring case (see [`crate::request::field`]).

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Parses JSON text, refusing duplicate object keys at any depth.
pub fn parse(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = StrictValue.deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

/// The first pair of keys of `obj` that are equal ignoring ASCII case.
pub fn case_insensitive_duplicate(obj: &Map<String, Value>) -> Option<(&str, &str)> {
    // Linear: an envelope may carry many keys, and this must not be the
    // quadratic step a hostile body exploits.
    let mut seen = std::collections::HashMap::with_capacity(obj.len());
    for key in obj.keys() {
        if let Some(first) = seen.insert(key.to_ascii_lowercase(), key.as_str()) {
            return Some((first, key.as_str()));
        }
    }
    None
}

struct StrictValue;

impl<'de> DeserializeSeed<'de> for StrictValue {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictValue {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(StrictValue)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(de::Error::custom(format_args!(
                    "the key {key:?} appears twice in one object"
                )));
            }
            let value = map.next_value_seed(StrictValue)?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_refused_at_any_depth() {
        assert!(parse(br#"{"a":1,"b":[{"c":2}]}"#).is_ok());
        let e = parse(br#"{"a":1,"a":2}"#).unwrap_err().to_string();
        assert!(e.contains("\"a\" appears twice"), "{e}");
        assert!(parse(br#"{"x":{"k":1,"k":1}}"#).is_err());
        assert!(parse(br#"[{"k":1,"k":1}]"#).is_err());
        assert!(parse(br#"{"a":1} x"#).is_err(), "trailing text");
    }

    #[test]
    fn values_match_serde_json() {
        let text =
            br#"{"s":"x","n":-3,"u":18446744073709551615,"f":1.5,"b":true,"z":null,"l":[1,"2"]}"#;
        assert_eq!(
            parse(text).unwrap(),
            serde_json::from_slice::<Value>(text).unwrap()
        );
    }

    #[test]
    fn case_insensitive_pairs() {
        let Value::Object(o) = parse(br#"{"quote":"a","Quote":"b"}"#).unwrap() else {
            panic!()
        };
        assert_eq!(case_insensitive_duplicate(&o), Some(("quote", "Quote")));
        let Value::Object(o) = parse(br#"{"quote":"a","nonce":"b"}"#).unwrap() else {
            panic!()
        };
        assert_eq!(case_insensitive_duplicate(&o), None);
    }
}
