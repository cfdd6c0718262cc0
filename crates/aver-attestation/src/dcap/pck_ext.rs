//! The Intel SGX extensions of a PCK certificate (OID 1.2.840.113741.1.13.1):
//! the platform's TCB (16 CPUSVN components and PCESVN), its PCE-ID and its
//! FMSPC. TCB evaluation matches these against the TCB info, as Intel's QVL
//! does: the values come from the certificate Intel signed, not from the
//! quote header.

use x509_parser::der_parser::ber::BerObject;
use x509_parser::der_parser::parse_der;

/// OID of the SGX extensions, and the prefix of every field inside.
const SGX_EXTENSIONS: &str = "1.2.840.113741.1.13.1";
/// The same OID's DER content bytes: fields are matched on these bytes
/// (formatting every OID as text cost more than the rest of the parse).
const SGX_EXTENSIONS_DER: [u8; 9] = [0x2a, 0x86, 0x48, 0x86, 0xf8, 0x4d, 0x01, 0x0d, 0x01];
/// Most arcs read after the SGX prefix (`.2.17` has two).
const MAX_REL_ARCS: usize = 4;

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
    from_certificate(&cert)
}

/// [`parse_pck_extensions`] of a certificate already parsed.
pub fn from_certificate(
    cert: &x509_parser::certificate::X509Certificate<'_>,
) -> Result<PckExtensions, String> {
    let mut value = None;
    for ext in cert.extensions() {
        if ext.oid.as_bytes() == SGX_EXTENSIONS_DER {
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
        match oid.as_slice() {
            [2] => {
                for (sub, sv) in fields(v)? {
                    let [2, n] = sub.as_slice() else {
                        continue;
                    };
                    match usize::from(*n) {
                        i @ 1..=16 => {
                            let svn = sv
                                .as_u32()
                                .ok()
                                .and_then(|x| u8::try_from(x).ok())
                                .ok_or_else(|| format!("SGX TCB component {i} is not a byte"))?;
                            if let Some(slot) = components.get_mut(i - 1) {
                                set_once(slot, svn, "a TCB component")?;
                            }
                        }
                        17 => {
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
            [3] => {
                let b: [u8; 2] = octets(v, "PCE-ID")?;
                set_once(&mut pce_id, b, "PCE-ID")?;
            }
            [4] => {
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
/// each OID given by its arcs after the SGX extension prefix (`[2]` for
/// ".2", `[2, 17]` for ".2.17"). Arcs above 127 (never used by Intel) read
/// as 255, which matches no field.
fn fields<'a, 'b>(
    seq: &'b BerObject<'a>,
) -> Result<Vec<(rel_oid::Arcs, &'b BerObject<'a>)>, String> {
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
            .map_err(|_| "SGX extension: a field does not start with an OID".to_string())?;
        let Some(rel) = oid.as_bytes().strip_prefix(&SGX_EXTENSIONS_DER[..]) else {
            return Err(format!(
                "SGX extension: unexpected OID {} (not under {SGX_EXTENSIONS})",
                oid.to_id_string()
            ));
        };
        out.push((rel_oid::Arcs::from_der(rel), value));
    }
    Ok(out)
}

mod rel_oid {
    /// The first few arcs of a relative OID (see [`super::fields`]).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(super) struct Arcs {
        arcs: [u8; super::MAX_REL_ARCS],
        len: usize,
    }

    impl Arcs {
        /// Each arc below 128 is one DER byte; a longer arc (continuation
        /// bit set) becomes 255 and its bytes are skipped.
        pub(super) fn from_der(rel: &[u8]) -> Arcs {
            let mut a = Arcs {
                arcs: [0; super::MAX_REL_ARCS],
                len: 0,
            };
            let mut in_long = false;
            for &b in rel {
                if in_long {
                    in_long = b & 0x80 != 0;
                    continue;
                }
                let arc = if b & 0x80 != 0 {
                    in_long = true;
                    255
                } else {
                    b
                };
                if let Some(slot) = a.arcs.get_mut(a.len) {
                    *slot = arc;
                    a.len += 1;
                } else {
                    // More arcs than any field has: matches nothing.
                    a.len = super::MAX_REL_ARCS + 1;
                    break;
                }
            }
            a
        }

        pub(super) fn as_slice(&self) -> &[u8] {
            self.arcs.get(..self.len).unwrap_or(&[255])
        }
    }
}
