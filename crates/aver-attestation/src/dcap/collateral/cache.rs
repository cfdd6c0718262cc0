//! Verified collateral in memory, by FMSPC: what every quote of a platform
//! family uses without re-verifying the collateral. Shared by every
//! provider; filled by whoever has collateral (the server's store and
//! PCCS source, the CLI); entries past their nextUpdate are ignored, never
//! used.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use super::VerifiedCollateral;
use crate::VerificationTime;

/// Most platform families kept (a bound, not a working limit: Intel has a
/// few hundred FMSPCs).
pub const MAX_ENTRIES: usize = 4096;

/// Verified collateral by FMSPC.
#[derive(Debug, Default)]
pub struct CollateralCache {
    entries: RwLock<HashMap<[u8; 6], Arc<VerifiedCollateral>>>,
    /// FMSPCs quotes asked for without valid collateral, with the PCK CA
    /// (`processor` or `platform`) whose CRL they need: what a collateral
    /// source should fetch next.
    misses: std::sync::Mutex<HashMap<[u8; 6], &'static str>>,
}

impl CollateralCache {
    /// Keeps `c` for its FMSPC, unless what is there is newer (a higher
    /// TCB evaluation data number, or the same number issued later).
    pub fn insert(&self, c: VerifiedCollateral) -> bool {
        let Ok(mut map) = self.entries.write() else {
            return false;
        };
        let fmspc = c.tcb_info.fmspc;
        if let Some(old) = map.get(&fmspc) {
            let newer = (
                c.tcb_info.tcb_evaluation_data_number,
                c.valid_until,
                c.valid_from,
            ) >= (
                old.tcb_info.tcb_evaluation_data_number,
                old.valid_until,
                old.valid_from,
            );
            if !newer {
                return false;
            }
        } else if map.len() >= MAX_ENTRIES {
            return false;
        }
        map.insert(fmspc, Arc::new(c));
        true
    }

    /// The collateral for `fmspc` valid at `time`, if any.
    pub fn get(&self, fmspc: &[u8; 6], time: VerificationTime) -> Option<Arc<VerifiedCollateral>> {
        let map = self.entries.read().ok()?;
        let c = map.get(fmspc)?;
        c.check_time(time).ok()?;
        Some(c.clone())
    }

    /// Records that a quote of `fmspc` (PCK CA `ca`) found no collateral.
    pub fn note_miss(&self, fmspc: [u8; 6], ca: &'static str) {
        if let Ok(mut m) = self.misses.lock()
            && m.len() < MAX_ENTRIES
        {
            m.insert(fmspc, ca);
        }
    }

    /// The misses recorded since the last call.
    pub fn take_misses(&self) -> Vec<([u8; 6], &'static str)> {
        self.misses
            .lock()
            .map(|mut m| m.drain().collect())
            .unwrap_or_default()
    }

    /// Every FMSPC held, with the entry's expiry (seconds) and the kind of
    /// its PCK CA (`processor` or `platform`, from the PCK CRL's issuer):
    /// what a source needs to refresh it.
    pub fn list(&self) -> Vec<([u8; 6], u64, &'static str)> {
        self.entries
            .read()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| {
                        let ca = if v.pck_crl.issuer_text.contains("Platform") {
                            "platform"
                        } else {
                            "processor"
                        };
                        (*k, v.valid_until, ca)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}
