//! What a VCEK lookup at AMD's Key Distribution Service needs, computed
//! from a report: the product, the hardware ID and the TCB
//! (`/vcek/v1/{product}/{hwid}?blSPL=&teeSPL=&snpSPL=&ucodeSPL=[&fmcSPL=]`),
//! and the cache key of the answer. No I/O here: the service fetches and
//! caches (`aver-server::kds`), then hands the VCEK to the verifier.

use super::SnpError;
use super::report::{SigningKey, parse_report};
use super::verify::{SnpEvidence, encode_evidence};

/// One VCEK to look up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VcekLookup {
    /// Products to try, most likely first: a v3+ report's CPUID names one;
    /// a v2 report does not, so Milan then Genoa (Turin has v3+ reports).
    pub products: Vec<&'static str>,
    /// Hardware ID, lowercase hex: the 64-byte chip ID, its first 8 bytes
    /// for Turin.
    pub hwid_by_product: Vec<String>,
    /// The query string of the TCB, per product (Turin's layout differs).
    pub query_by_product: Vec<String>,
}

impl VcekLookup {
    /// `(cache key, path)` for each product to try, in order.
    pub fn candidates(&self) -> impl Iterator<Item = (String, String)> + '_ {
        self.products
            .iter()
            .zip(&self.hwid_by_product)
            .zip(&self.query_by_product)
            .map(|((product, hwid), query)| {
                (
                    format!("amd/{}/vcek/{hwid}/{query}", product.to_ascii_lowercase()),
                    format!("/vcek/v1/{product}/{hwid}?{query}"),
                )
            })
    }
}

/// The VCEK lookup for evidence that carries no chain, or `None` when the
/// evidence has a chain or is not VCEK-signed (a VLEK cannot be fetched by
/// chip ID). Malformed reports are left for the verifier to refuse with
/// its own error.
pub fn vcek_lookup(evidence: &SnpEvidence) -> Option<VcekLookup> {
    if !evidence.certs.is_empty() {
        return None;
    }
    let report = parse_report(&evidence.report).ok()?;
    if report.signing_key() != SigningKey::Vcek || report.chip_id.iter().all(|b| *b == 0) {
        return None;
    }
    let products: Vec<&'static str> = match report.cpuid_family() {
        Some(0x1A) => vec!["Turin"],
        Some(0x19) if (0x10..=0x1F).contains(&report.cpuid[1]) => vec!["Genoa"],
        Some(0x19) if (0xA0..=0xAF).contains(&report.cpuid[1]) => vec!["Genoa"],
        Some(0x19) => vec!["Milan"],
        _ => vec!["Milan", "Genoa"],
    };
    let mut hwids = Vec::new();
    let mut queries = Vec::new();
    for product in &products {
        let turin = *product == "Turin";
        let tcb = report.reported_tcb.parts(turin);
        let hwid = if turin {
            hex::encode(report.chip_id.get(..8).unwrap_or_default())
        } else {
            hex::encode(report.chip_id)
        };
        let mut query = format!(
            "blSPL={}&teeSPL={}&snpSPL={}&ucodeSPL={}",
            tcb.bootloader, tcb.tee, tcb.snp, tcb.microcode
        );
        if let Some(fmc) = tcb.fmc {
            query = format!("fmcSPL={fmc}&{query}");
        }
        hwids.push(hwid);
        queries.push(query);
    }
    Some(VcekLookup {
        products,
        hwid_by_product: hwids,
        query_by_product: queries,
    })
}

/// The evidence again, with `vcek_der` as its chain (the built-in ASK and
/// ARK complete it).
pub fn with_vcek(evidence: &SnpEvidence, vcek_der: &[u8]) -> Vec<u8> {
    let pem = super::certs::pem_chain(&[vcek_der.to_vec()]);
    encode_evidence(&evidence.report, Some(&pem))
}

/// Parses Azure's evidence JSON for the lookup (see
/// [`super::parse_evidence`]).
pub fn evidence(bytes: &[u8]) -> Result<SnpEvidence, SnpError> {
    super::parse_evidence(bytes)
}

/// The cache key under which a VCEK is kept (the one [`VcekLookup`] asks
/// for), computed from the certificate itself after its chain verified to
/// a trusted ARK at `time`: `aver collateral import` of VCEKs for hosts
/// that cannot reach AMD's service. VLEKs are refused: they are not looked
/// up by chip ID.
pub fn vcek_cache_key(
    trust: &super::SnpTrust,
    vcek_der: &[u8],
    time: crate::VerificationTime,
) -> Result<String, SnpError> {
    let chain = trust.verify_chain(&[vcek_der.to_vec()], time)?;
    if chain.kind != super::KeyKind::Vcek {
        return Err(SnpError::CertificateChainMalformed(
            "a VLEK is not looked up by chip ID: send it with the report (VcekCertChain)".into(),
        ));
    }
    let hwid = chain.hwid.as_ref().ok_or_else(|| {
        SnpError::CertificateChainMalformed("the VCEK has no hardware ID extension".into())
    })?;
    let product = match &chain.product {
        super::Product::Milan => "milan",
        super::Product::Genoa => "genoa",
        super::Product::Turin => "turin",
        super::Product::Other(name) => {
            return Err(SnpError::CertificateChainMalformed(format!(
                "a VCEK of product {name:?}: Aver looks up Milan, Genoa and Turin VCEKs"
            )));
        }
    };
    let t = &chain.tcb;
    let (Some(bl), Some(tee), Some(snp), Some(ucode)) = (t.bootloader, t.tee, t.snp, t.microcode)
    else {
        return Err(SnpError::CertificateChainMalformed(
            "the VCEK lacks a TCB extension (bootloader, TEE, SNP or microcode SPL)".into(),
        ));
    };
    let mut query = format!("blSPL={bl}&teeSPL={tee}&snpSPL={snp}&ucodeSPL={ucode}");
    if let Some(fmc) = t.fmc {
        query = format!("fmcSPL={fmc}&{query}");
    }
    Ok(format!("amd/{product}/vcek/{}/{query}", hex::encode(hwid)))
}

/// A certificate's notAfter (Unix seconds), for the cache's expiry column.
pub fn not_after(der: &[u8]) -> Option<i64> {
    x509_parser::parse_x509_certificate(der)
        .ok()
        .map(|(_, c)| c.validity().not_after.timestamp())
}
