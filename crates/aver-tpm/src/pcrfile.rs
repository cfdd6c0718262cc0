//! PCR value files given next to a quote: tpm2-tools' "serialized" PCR
//! file and a JSON map.
//!
//! These values are what [`crate::verify_quote`] checks against the
//! quote's `pcrDigest`, so a parse that silently dropped, reordered or
//! invented a value would turn into a confusing digest mismatch (or, with
//! a lenient caller, into published values the quote never covered). The
//! parsers therefore accept exactly one reading of the input and say what
//! is wrong, and where, otherwise.
//!
//! ## tpm2-tools "serialized" format
//!
//! Written by `tpm2_quote -o` / `tpm2_pcrread -o` (the default
//! `--pcrs_format=serialized`; lib/pcr.c `pcr_fwrite_serialized`): raw C
//! structures of the TSS2 headers, with integers little-endian (tpm2-tools
//! 5.2 and later convert them with `htole16`/`htole32`; earlier releases
//! dumped host order, which is the same on every little-endian host). The
//! other binary choices of `--pcrs_format` are not read here: `values`
//! (bare digests, without the selection they belong to) and `marshaled`
//! (TPM big-endian marshaling of the same structures).
//!
//! ```text
//! TPML_PCR_SELECTION   4 + 16 × 8 = 132 bytes
//!   u32 count                          (≤ 16 = TPM2_NUM_PCR_BANKS)
//!   16 × TPMS_PCR_SELECTION            (entries ≥ count are unused)
//!        u16 hash, u8 sizeofSelect (≤ 4), u8 pcrSelect[4], 1 padding byte
//! u32 n                                number of TPML_DIGEST that follow (≤ 32)
//! n × TPML_DIGEST      4 + 8 × 66 = 532 bytes each
//!   u32 count                          (≤ 8)
//!   8 × TPM2B_DIGEST: u16 size (≤ 64), u8 buffer[64]
//! ```
//!
//! The file is therefore exactly `136 + 532 × n` bytes. The digests, in
//! list order, are the values of the selected PCRs in selection order
//! (entries in order, PCRs ascending within an entry: `pcrSelect[i]` bit
//! `j` is PCR `8i + j`), which is how `TPM2_PCR_Read` returns them and how
//! tpm2-tools concatenates successive reads. Struct padding, unused
//! selection entries, select bytes beyond `sizeofSelect`, unused digest
//! slots and buffer bytes beyond `size` are ignored: they are not part of
//! the value and need not be zero.
//!
//! Rejected: counts above the array sizes, a `sizeofSelect` above 4, a
//! selected PCR above 23 (PC Client TPMs have PCRs 0–23; the quote parser
//! and replay use the same range), a bank Aver cannot hash (e.g. SM3: its
//! values could not be checked against the quote), the same PCR of a bank
//! selected twice, a number of digests different from the number of
//! selected PCRs, and a digest whose size is not the bank's digest size.
//!
//! ## JSON format
//!
//! `{"sha256": {"0": "<hex>", "16": "<hex>"}, "sha1": {...}}`: bank names
//! as tpm2-tools spells them (`sha1`, `sha256`, `sha384`, `sha512`; ASCII
//! case-insensitive), PCR indices as decimal strings 0–23, values as hex of
//! exactly the bank's digest size (surrounding whitespace is ignored).
//! Top-level keys starting with `_` are comments and ignored. A bank or a
//! PCR given twice (including the same key twice, which ordinary JSON
//! object parsing would silently collapse) is an error.

use crate::alg::{HashAlg, PcrValues};
use crate::reader::{ParseError, Reader};
use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use std::fmt;
use std::marker::PhantomData;
use thiserror::Error;

/// TPM2_NUM_PCR_BANKS: entries in a TPML_PCR_SELECTION.
pub const NUM_PCR_BANKS: usize = 16;
/// TPM2_PCR_SELECT_MAX: bytes of `pcrSelect` in a TPMS_PCR_SELECTION.
pub const PCR_SELECT_MAX: usize = 4;
/// Digests in a TPML_DIGEST.
pub const DIGESTS_PER_LIST: usize = 8;
/// `sizeof(TPMU_HA)`: the buffer of a TPM2B_DIGEST.
pub const DIGEST_BUFFER: usize = 64;
/// Most TPML_DIGEST lists tpm2-tools writes (`tpm2_pcrs.pcr_values` has
/// TPM2_MAX_PCRS = 32 entries).
pub const MAX_DIGEST_LISTS: u32 = 32;
/// Size of the serialized TPML_PCR_SELECTION.
pub const SELECTION_LEN: usize = 4 + NUM_PCR_BANKS * 8;
/// Size of one serialized TPML_DIGEST.
pub const DIGEST_LIST_LEN: usize = 4 + DIGESTS_PER_LIST * (2 + DIGEST_BUFFER);
/// Highest PCR index accepted in either format.
pub const MAX_PCR_INDEX: u32 = 23;

/// Format of a PCR file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PcrFileFormat {
    /// `{"sha256": {"0": "<hex>"}}`.
    Json,
    /// tpm2-tools `--pcrs_format=serialized`.
    Tpm2ToolsSerialized,
}

/// Error from the PCR file parsers. Offsets are byte offsets in the file.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PcrFileError {
    /// The input is empty.
    #[error("PCR file is empty")]
    Empty,
    /// The fixed header is truncated.
    #[error("tpm2-tools PCR file: {0}")]
    Malformed(#[from] ParseError),
    /// `TPML_PCR_SELECTION.count` above 16.
    #[error("tpm2-tools PCR file: TPML_PCR_SELECTION.count is {count}, at most {NUM_PCR_BANKS}")]
    SelectionCount {
        /// Value found.
        count: u32,
    },
    /// `sizeofSelect` above 4.
    #[error(
        "tpm2-tools PCR file: selection {entry} (offset {offset}) has sizeofSelect {size}, at most {PCR_SELECT_MAX}"
    )]
    SelectSize {
        /// Selection entry (0-based).
        entry: usize,
        /// Offset of the TPMS_PCR_SELECTION.
        offset: usize,
        /// Value found.
        size: u8,
    },
    /// A selection entry selects PCRs of a bank Aver cannot hash.
    #[error(
        "tpm2-tools PCR file: selection {entry} (offset {offset}) selects PCRs of hash algorithm 0x{alg:04x}, which Aver cannot check"
    )]
    UnsupportedBank {
        /// Selection entry (0-based).
        entry: usize,
        /// Offset of the TPMS_PCR_SELECTION.
        offset: usize,
        /// TPM_ALG_ID found.
        alg: u16,
    },
    /// The number of TPML_DIGEST lists is above 32.
    #[error("tpm2-tools PCR file: {count} digest lists, at most {MAX_DIGEST_LISTS}")]
    DigestListCount {
        /// Value found.
        count: u32,
    },
    /// The file length does not match the number of digest lists.
    #[error(
        "tpm2-tools PCR file is {len} bytes, but a file with {lists} digest lists is exactly {expected} bytes ({SELECTION_LEN} + 4 + {lists} x {DIGEST_LIST_LEN})"
    )]
    Length {
        /// Actual length.
        len: usize,
        /// Number of digest lists the file declares.
        lists: u32,
        /// Length that number implies.
        expected: usize,
    },
    /// `TPML_DIGEST.count` above 8.
    #[error(
        "tpm2-tools PCR file: digest list {list} (offset {offset}) has count {count}, at most {DIGESTS_PER_LIST}"
    )]
    DigestCount {
        /// Digest list (0-based).
        list: usize,
        /// Offset of the TPML_DIGEST.
        offset: usize,
        /// Value found.
        count: u32,
    },
    /// `TPM2B_DIGEST.size` above 64.
    #[error(
        "tpm2-tools PCR file: digest {index} of list {list} (offset {offset}) has size {size}, at most {DIGEST_BUFFER}"
    )]
    DigestSizeField {
        /// Digest list (0-based).
        list: usize,
        /// Digest within the list (0-based).
        index: usize,
        /// Offset of the TPM2B_DIGEST.
        offset: usize,
        /// Value found.
        size: u16,
    },
    /// The numbers of selected PCRs and of digests differ.
    #[error("tpm2-tools PCR file selects {selected} PCRs but holds {values} digests")]
    ValueCount {
        /// PCRs selected.
        selected: usize,
        /// Digests present.
        values: usize,
    },
    /// A PCR index above 23.
    #[error("{bank} PCR {pcr}: PCR index outside 0-{MAX_PCR_INDEX}", bank = .bank.lower_name())]
    PcrIndexOutOfRange {
        /// Bank.
        bank: HashAlg,
        /// PCR index.
        pcr: u32,
    },
    /// The same PCR of a bank is given twice.
    #[error("{bank} PCR {pcr} is given twice", bank = .bank.lower_name())]
    DuplicatePcr {
        /// Bank.
        bank: HashAlg,
        /// PCR index.
        pcr: u32,
    },
    /// A value whose length is not the bank's digest size.
    #[error(
        "{bank} PCR {pcr}: value is {len} bytes, a {bank} digest is {expected}",
        bank = .bank.lower_name()
    )]
    DigestLength {
        /// Bank.
        bank: HashAlg,
        /// PCR index.
        pcr: u32,
        /// Length found.
        len: usize,
        /// Digest size of the bank.
        expected: usize,
    },
    /// Not valid JSON, or a top level that is not an object.
    #[error("PCR JSON: {0}")]
    Json(String),
    /// A bank name that is not `sha1`/`sha256`/`sha384`/`sha512`.
    #[error("PCR JSON: unknown bank {0:?} (expected sha1, sha256, sha384 or sha512)")]
    UnknownBank(String),
    /// A bank given twice (names compare ASCII case-insensitively).
    #[error("PCR JSON: bank {0:?} is given twice")]
    DuplicateBank(String),
    /// A bank whose value is not an object.
    #[error("PCR JSON: bank {0:?} is not an object of PCR index to hex value")]
    BankNotObject(String),
    /// A PCR key that is not a decimal index 0–23.
    #[error("PCR JSON: bank {bank:?}: {key:?} is not a PCR index (0-{MAX_PCR_INDEX})")]
    BadPcrIndex {
        /// Bank name as written.
        bank: String,
        /// Key as written.
        key: String,
    },
    /// A PCR value that is not a hex string.
    #[error("PCR JSON: {bank} PCR {pcr} is not a hex string", bank = .bank.lower_name())]
    NotHex {
        /// Bank.
        bank: HashAlg,
        /// PCR index.
        pcr: u32,
    },
}

/// Which format `bytes` is in: JSON when it starts (after ASCII
/// whitespace) with `{`, or is any valid JSON document; tpm2-tools
/// serialized otherwise. No valid file of one format is taken for the
/// other: a valid serialized file starts with a little-endian count ≤ 16,
/// so its second byte is NUL, which JSON never contains (and `{` is not a
/// valid first byte).
pub fn detect_pcr_file_format(bytes: &[u8]) -> PcrFileFormat {
    if bytes.trim_ascii_start().first() == Some(&b'{')
        || serde_json::from_slice::<IgnoredAny>(bytes).is_ok()
    {
        PcrFileFormat::Json
    } else {
        PcrFileFormat::Tpm2ToolsSerialized
    }
}

/// Parses a PCR file in either format (see [`detect_pcr_file_format`]).
pub fn parse_pcr_file(bytes: &[u8]) -> Result<PcrValues, PcrFileError> {
    if bytes.is_empty() {
        return Err(PcrFileError::Empty);
    }
    match detect_pcr_file_format(bytes) {
        PcrFileFormat::Json => parse_pcr_json(bytes),
        PcrFileFormat::Tpm2ToolsSerialized => parse_tpm2_tools_pcrs(bytes),
    }
}

fn pcr_in_range(bank: HashAlg, pcr: u32) -> Result<u32, PcrFileError> {
    if pcr > MAX_PCR_INDEX {
        Err(PcrFileError::PcrIndexOutOfRange { bank, pcr })
    } else {
        Ok(pcr)
    }
}

fn check_len(bank: HashAlg, pcr: u32, value: &[u8]) -> Result<(), PcrFileError> {
    if value.len() == bank.size() {
        Ok(())
    } else {
        Err(PcrFileError::DigestLength {
            bank,
            pcr,
            len: value.len(),
            expected: bank.size(),
        })
    }
}

/// Inserts a value, refusing a second value for the same bank and PCR.
fn insert_once(
    out: &mut PcrValues,
    bank: HashAlg,
    pcr: u32,
    value: Vec<u8>,
) -> Result<(), PcrFileError> {
    let slot = out.entry(bank).or_default();
    if slot.contains_key(&pcr) {
        return Err(PcrFileError::DuplicatePcr { bank, pcr });
    }
    slot.insert(pcr, value);
    Ok(())
}

/// Parses tpm2-tools' serialized PCR file (format in the module docs).
pub fn parse_tpm2_tools_pcrs(bytes: &[u8]) -> Result<PcrValues, PcrFileError> {
    if bytes.is_empty() {
        return Err(PcrFileError::Empty);
    }
    let mut r = Reader::new(bytes);
    let count = r.u32_le("TPML_PCR_SELECTION.count")?;
    if count as usize > NUM_PCR_BANKS {
        return Err(PcrFileError::SelectionCount { count });
    }
    // (bank, pcr) in selection order; at most 16 × 24 entries.
    let mut order: Vec<(HashAlg, u32)> = Vec::new();
    for entry in 0..NUM_PCR_BANKS {
        let offset = r.offset();
        let alg = r.u16_le("TPMS_PCR_SELECTION.hash")?;
        let size = r.u8("TPMS_PCR_SELECTION.sizeofSelect")?;
        let select = r.bytes(PCR_SELECT_MAX, "TPMS_PCR_SELECTION.pcrSelect")?;
        r.u8("TPMS_PCR_SELECTION padding")?;
        if entry >= count as usize {
            continue; // unused array slot
        }
        let Some(bits) = select.get(..usize::from(size)) else {
            return Err(PcrFileError::SelectSize {
                entry,
                offset,
                size,
            });
        };
        if bits.iter().all(|&b| b == 0) {
            continue; // selects nothing: the bank does not matter
        }
        let bank =
            HashAlg::from_tpm(alg).ok_or(PcrFileError::UnsupportedBank { entry, offset, alg })?;
        for (byte_index, &byte) in bits.iter().enumerate() {
            for bit in 0..8u32 {
                if byte & (1 << bit) == 0 {
                    continue;
                }
                // byte_index < 4, so this cannot overflow.
                let pcr = pcr_in_range(bank, byte_index as u32 * 8 + bit)?;
                if order.contains(&(bank, pcr)) {
                    return Err(PcrFileError::DuplicatePcr { bank, pcr });
                }
                order.push((bank, pcr));
            }
        }
    }
    let lists = r.u32_le("TPML_DIGEST list count")?;
    if lists > MAX_DIGEST_LISTS {
        return Err(PcrFileError::DigestListCount { count: lists });
    }
    // lists ≤ 32, so no overflow.
    let expected = SELECTION_LEN + 4 + lists as usize * DIGEST_LIST_LEN;
    if bytes.len() != expected {
        return Err(PcrFileError::Length {
            len: bytes.len(),
            lists,
            expected,
        });
    }
    let mut values: Vec<&[u8]> = Vec::new();
    for list in 0..lists as usize {
        let list_offset = r.offset();
        let n = r.u32_le("TPML_DIGEST.count")?;
        if n as usize > DIGESTS_PER_LIST {
            return Err(PcrFileError::DigestCount {
                list,
                offset: list_offset,
                count: n,
            });
        }
        for index in 0..DIGESTS_PER_LIST {
            let offset = r.offset();
            let size = r.u16_le("TPM2B_DIGEST.size")?;
            let buffer = r.bytes(DIGEST_BUFFER, "TPM2B_DIGEST.buffer")?;
            if index >= n as usize {
                continue; // unused array slot
            }
            let Some(value) = buffer.get(..usize::from(size)) else {
                return Err(PcrFileError::DigestSizeField {
                    list,
                    index,
                    offset,
                    size,
                });
            };
            values.push(value);
        }
    }
    r.finish("tpm2-tools PCR file")?;
    if values.len() != order.len() {
        return Err(PcrFileError::ValueCount {
            selected: order.len(),
            values: values.len(),
        });
    }
    let mut out = PcrValues::new();
    for ((bank, pcr), value) in order.into_iter().zip(values) {
        check_len(bank, pcr, value)?;
        insert_once(&mut out, bank, pcr, value.to_vec())?;
    }
    Ok(out)
}

/// Parses the JSON PCR format (see the module docs).
pub fn parse_pcr_json(bytes: &[u8]) -> Result<PcrValues, PcrFileError> {
    if bytes.is_empty() {
        return Err(PcrFileError::Empty);
    }
    let top: Entries<Field> = serde_json::from_slice(bytes)
        .map_err(|e| PcrFileError::Json(format!("not a JSON object of bank to PCR values: {e}")))?;
    let mut out = PcrValues::new();
    let mut seen: Vec<HashAlg> = Vec::new();
    for (name, field) in top.0 {
        if name.starts_with('_') {
            continue;
        }
        let bank = HashAlg::ALL
            .into_iter()
            .find(|b| b.lower_name().eq_ignore_ascii_case(&name))
            .ok_or_else(|| PcrFileError::UnknownBank(name.clone()))?;
        if seen.contains(&bank) {
            return Err(PcrFileError::DuplicateBank(name));
        }
        seen.push(bank);
        let Field::Object(values) = field else {
            return Err(PcrFileError::BankNotObject(name));
        };
        // An empty bank object still names the bank.
        out.entry(bank).or_default();
        for (key, value) in values {
            let pcr = parse_index(&key)
                .filter(|&p| p <= MAX_PCR_INDEX)
                .ok_or_else(|| PcrFileError::BadPcrIndex {
                    bank: name.clone(),
                    key: key.clone(),
                })?;
            let bytes = value
                .as_str()
                .and_then(|h| hex::decode(h.trim()).ok())
                .ok_or(PcrFileError::NotHex { bank, pcr })?;
            check_len(bank, pcr, &bytes)?;
            insert_once(&mut out, bank, pcr, bytes)?;
        }
    }
    Ok(out)
}

/// A decimal PCR index: ASCII digits only (after trimming whitespace), so
/// that `+1` or `0x1` are not quietly read as PCR 1.
fn parse_index(key: &str) -> Option<u32> {
    let k = key.trim();
    if k.is_empty() || !k.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    k.parse().ok()
}

/// A JSON object read as its list of entries, duplicates included (a
/// `serde_json::Map` keeps only the last of two equal keys).
struct Entries<T>(Vec<(String, T)>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Entries<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Entries<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                let mut v = Vec::new();
                while let Some(entry) = m.next_entry::<String, T>()? {
                    v.push(entry);
                }
                Ok(Entries(v))
            }
        }
        d.deserialize_map(V(PhantomData))
    }
}

/// A top-level value: a bank's object (entries kept in order, duplicates
/// included) or anything else (only valid under a `_comment` key).
enum Field {
    Object(Vec<(String, Value)>),
    Other,
}

impl<'de> Deserialize<'de> for Field {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Field;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Field, A::Error> {
                let mut v = Vec::new();
                while let Some(entry) = m.next_entry::<String, Value>()? {
                    v.push(entry);
                }
                Ok(Field::Object(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Field, A::Error> {
                while s.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Field::Other)
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Field, E> {
                Ok(Field::Other)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Field, E> {
                Ok(Field::Other)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Field, E> {
                Ok(Field::Other)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Field, E> {
                Ok(Field::Other)
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Field, E> {
                Ok(Field::Other)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Field, E> {
                Ok(Field::Other)
            }
        }
        d.deserialize_any(V)
    }
}
