//! The Intel SGX extensions of a PCK certificate (OID 1.2.840.113741.1.13.1):
//! the platform's TCB (16 CPUSVN components and PCESVN), its PCE-ID and its
//! FMSPC. TCB evaluation matches these against the TCB info, as Intel's QVL
//! does: the values come from the certificate Intel signed, not from the
//! quote header.

use x509_parser::der_parser::ber::BerObject;
use x509_parser::der_parser::parse_der;

/// OID of the SGX extensions, and the prefix of every field inside.
const SGX_EXTENSIONS: &str = "1.2.840.113741.1.13.1";

/// The SGX facts a PCK certificate carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PckExtensions {
    /// CPUSVN components 1–16 (the `.2.1` … `.2.16` fields).
    pub cpu_svn_components: [u8; 16],
    /// PCESVN (`.2.17`).
    pub pce_svn: u16,
    /// PCE-ID (`.3`), 2 bytes.
    pub pce_id: [u8; 2],
    /// FMSPC (`.4`), 6 bytes.
    pub fmspc: [u8; 6],
}

/// Reads the SGX extensions of the PCK certificate `leaf_der`.
pub fn parse_pck_extensions(leaf_der: &[u8]) -> Result<PckExtensions, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(leaf_der)
        .map_err(|e| format!("the PCK certificate does not parse: {e}"))?;
    let mut value = None;
    for ext in cert.extensions() {
        if ext.oid.to_id_string() == SGX_EXTENSIONS {
            if value.is_some() {
                return Err("the PCK certificate has two SGX extensions".into());
            }
            value = Some(ext.value);
        }
    }
    let value = value.ok_or("the PCK certificate has no SGX extension (1.2.840.113741.1.13.1)")?;
    let (rest, top) = parse_der(value).map_err(|e| format!("SGX extension: {e}"))?;
    if !rest.is_empty() {
        return Err("SGX extension: trailing bytes".into());
    }
    let mut components: [Option<u8>; 16] = [None; 16];
    let mut pce_svn = None;
    let mut pce_id = None;
    let mut fmspc = None;
    for (oid, v) in fields(&top)? {
        match oid.as_str() {
            ".2" => {
                for (sub, sv) in fields(v)? {
                    let Some(n) = sub.strip_prefix(".2.") else {
                        continue;
                    };
                    match n.parse::<usize>() {
                        Ok(i @ 1..=16) => {
                            let svn = sv
                                .as_u32()
                                .ok()
                                .and_then(|x| u8::try_from(x).ok())
                                .ok_or_else(|| format!("SGX TCB component {i} is not a byte"))?;
                            if let Some(slot) = components.get_mut(i - 1) {
                                set_once(slot, svn, "a TCB component")?;
                            }
                        }
                        Ok(17) => {
                            let svn = sv
                                .as_u32()
                                .ok()
                                .and_then(|x| u16::try_from(x).ok())
                                .ok_or("PCESVN is not a 16-bit integer")?;
                            set_once(&mut pce_svn, svn, "PCESVN")?;
                        }
                        _ => {}
                    }
                }
            }
            ".3" => {
                let b: [u8; 2] = octets(v, "PCE-ID")?;
                set_once(&mut pce_id, b, "PCE-ID")?;
            }
            ".4" => {
                let b: [u8; 6] = octets(v, "FMSPC")?;
                set_once(&mut fmspc, b, "FMSPC")?;
            }
            _ => {}
        }
    }
    let mut cpu_svn_components = [0u8; 16];
    for (out, c) in cpu_svn_components.iter_mut().zip(components) {
        *out = c.ok_or("the SGX extension lacks a TCB component")?;
    }
    Ok(PckExtensions {
        cpu_svn_components,
        pce_svn: pce_svn.ok_or("the SGX extension lacks PCESVN")?,
        pce_id: pce_id.ok_or("the SGX extension lacks PCE-ID")?,
        fmspc: fmspc.ok_or("the SGX extension lacks FMSPC")?,
    })
}

fn set_once<T>(slot: &mut Option<T>, value: T, what: &str) -> Result<(), String> {
    if slot.is_some() {
        return Err(format!("the SGX extension has {what} twice"));
    }
    *slot = Some(value);
    Ok(())
}

fn octets<const N: usize>(v: &BerObject<'_>, what: &str) -> Result<[u8; N], String> {
    v.as_slice()
        .ok()
        .and_then(|s| <[u8; N]>::try_from(s).ok())
        .ok_or_else(|| format!("{what} is not {N} bytes"))
}

/// The `SEQUENCE { OID, value }` pairs of a SGX extension sequence, with
/// each OID given relative to the SGX extension prefix (".2", ".2.17").
fn fields<'a, 'b>(seq: &'b BerObject<'a>) -> Result<Vec<(String, &'b BerObject<'a>)>, String> {
    let items = seq
        .as_sequence()
        .map_err(|_| "SGX extension: expected a SEQUENCE".to_string())?;
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let pair = item
            .as_sequence()
            .map_err(|_| "SGX extension: expected a SEQUENCE {OID, value}".to_string())?;
        let (Some(oid), Some(value), None) = (pair.first(), pair.get(1), pair.get(2)) else {
            return Err("SGX extension: a field is not {OID, value}".into());
        };
        let oid = oid
            .as_oid()
            .map_err(|_| "SGX extension: a field does not start with an OID".to_string())?
            .to_id_string();
        let Some(rel) = oid.strip_prefix(SGX_EXTENSIONS) else {
            return Err(format!("SGX extension: unexpected OID {oid}"));
        };
        out.push((rel.to_string(), value));
    }
    Ok(out)
}
