//! Verified collateral in memory, by TEE and FMSPC: what every quote of a
//! platform family uses without re-verifying the collateral. SGX and TDX
//! collateral of one FMSPC are different items (TCB info `id` SGX or TDX,
//! QE identity `QE` or `TD_QE`), so each TEE has its own entry. Shared by every
//! provider; filled by whoever has collateral (the server's store and
//! PCCS source, the CLI); entries past their nextUpdate are ignored, never
//! used.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use super::VerifiedCollateral;
use crate::VerificationTime;
use crate::dcap::TeeType;

/// The TEE whose quotes `c` judges: its TCB info's `id` (`TDX`, else SGX;
/// a v2 TCB info has no id and is SGX's).
pub fn tee_of(c: &VerifiedCollateral) -> TeeType {
    if c.tcb_info.id == "TDX" {
        TeeType::Tdx
    } else {
        TeeType::Sgx
    }
}

/// Most platform families kept (a bound, not a working limit: Intel has a
/// few hundred FMSPCs).
pub const MAX_ENTRIES: usize = 4096;

/// A cache key: the TEE whose collateral it is, and the FMSPC.
type Key = (TeeType, [u8; 6]);

/// Verified collateral by TEE and FMSPC.
#[derive(Debug, Default)]
pub struct CollateralCache {
    entries: RwLock<HashMap<Key, Arc<VerifiedCollateral>>>,
    /// TEEs and FMSPCs quotes asked for without valid collateral, with the
    /// PCK CA (`processor` or `platform`) whose CRL they need: what a
    /// collateral source should fetch next.
    misses: std::sync::Mutex<HashMap<Key, &'static str>>,
}

impl CollateralCache {
    /// Keeps `c` for its TEE and FMSPC, unless what is there is newer (a
    /// higher TCB evaluation data number, or the same number issued later).
    pub fn insert(&self, c: VerifiedCollateral) -> bool {
        let Ok(mut map) = self.entries.write() else {
            return false;
        };
        let key = (tee_of(&c), c.tcb_info.fmspc);
        if let Some(old) = map.get(&key) {
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
        map.insert(key, Arc::new(c));
        true
    }

    /// The SGX collateral for `fmspc` valid at `time`, if any.
    pub fn get(&self, fmspc: &[u8; 6], time: VerificationTime) -> Option<Arc<VerifiedCollateral>> {
        self.get_for(TeeType::Sgx, fmspc, time)
    }

    /// The collateral of `tee` for `fmspc` valid at `time`, if any.
    pub fn get_for(
        &self,
        tee: TeeType,
        fmspc: &[u8; 6],
        time: VerificationTime,
    ) -> Option<Arc<VerifiedCollateral>> {
        let map = self.entries.read().ok()?;
        let c = map.get(&(tee, *fmspc))?;
        c.check_time(time).ok()?;
        Some(c.clone())
    }

    /// Records that an SGX quote of `fmspc` (PCK CA `ca`) found no
    /// collateral.
    pub fn note_miss(&self, fmspc: [u8; 6], ca: &'static str) {
        self.note_miss_for(TeeType::Sgx, fmspc, ca);
    }

    /// Records that a quote of `tee` and `fmspc` (PCK CA `ca`) found no
    /// collateral.
    pub fn note_miss_for(&self, tee: TeeType, fmspc: [u8; 6], ca: &'static str) {
        if let Ok(mut m) = self.misses.lock()
            && m.len() < MAX_ENTRIES
        {
            m.insert((tee, fmspc), ca);
        }
    }

    /// The misses recorded since the last call.
    pub fn take_misses(&self) -> Vec<(TeeType, [u8; 6], &'static str)> {
        self.misses
            .lock()
            .map(|mut m| m.drain().map(|((t, f), ca)| (t, f, ca)).collect())
            .unwrap_or_default()
    }

    /// Every TEE and FMSPC held, with the entry's expiry (seconds) and the
    /// kind of its PCK CA (`processor` or `platform`, from the PCK CRL's
    /// issuer): what a source needs to refresh it.
    pub fn list(&self) -> Vec<(TeeType, [u8; 6], u64, &'static str)> {
        self.entries
            .read()
            .map(|m| {
                m.iter()
                    .map(|((tee, k), v)| {
                        let ca = if v.pck_crl.issuer_text.contains("Platform") {
                            "platform"
                        } else {
                            "processor"
                        };
                        (*tee, *k, v.valid_until, ca)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}
