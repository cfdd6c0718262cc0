//! Verified collateral in memory, by TEE, FMSPC and TCB evaluation data
//! number: what every quote of a platform family uses without re-verifying
//! the collateral. SGX and TDX collateral of one FMSPC are different items
//! (TCB info `id` SGX or TDX, QE identity `QE` or `TD_QE`), so each TEE has
//! its own entries. Shared by every provider; filled by whoever has
//! collateral (the server's store and PCCS source, the CLI); entries past
//! their nextUpdate are ignored, never used.
//!
//! Why several evaluation data numbers per FMSPC: Intel publishes TCB info
//! anew for every TCB recovery (the number goes up), and a policy may pin
//! an older one as its *TCB baseline* (Azure's `x-ms-sgx-tcbidentifier`),
//! to give its fleet time to patch. Quotes that do not ask for a baseline
//! are judged by the highest number held; one that asks is judged by
//! exactly that number, or not at all.

use std::collections::{BTreeMap, HashMap};
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

/// Most TCB evaluation data numbers kept per TEE and FMSPC (Intel keeps
/// about a dozen current at once); beyond it the lowest goes.
pub const MAX_NUMBERS_PER_FMSPC: usize = 16;

/// A cache key: the TEE whose collateral it is, and the FMSPC.
type Key = (TeeType, [u8; 6]);

/// A quote found no usable collateral: what a collateral source should
/// fetch next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Miss {
    pub tee: TeeType,
    pub fmspc: [u8; 6],
    /// The TCB evaluation data number the quote's policy asked for; `None`
    /// for the current collateral.
    pub baseline: Option<u32>,
    /// The kind of the quote's PCK CA (`processor` or `platform`), whose
    /// CRL the bundle needs.
    pub ca: &'static str,
}

/// One bundle held, as a collateral source sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub tee: TeeType,
    pub fmspc: [u8; 6],
    pub tcb_evaluation_data_number: u32,
    /// Whether this is the highest number held for its TEE and FMSPC (the
    /// one quotes without a baseline use).
    pub newest: bool,
    /// Expiry (seconds): the bundle's earliest nextUpdate.
    pub valid_until: u64,
    /// `processor` or `platform`, from the PCK CRL's issuer.
    pub ca: &'static str,
}

/// Verified collateral by TEE, FMSPC and TCB evaluation data number.
#[derive(Debug, Default)]
pub struct CollateralCache {
    entries: RwLock<HashMap<Key, BTreeMap<u32, Arc<VerifiedCollateral>>>>,
    /// What quotes asked for without finding valid collateral.
    misses: std::sync::Mutex<HashMap<(Key, Option<u32>), &'static str>>,
}

impl CollateralCache {
    /// Keeps `c` for its TEE, FMSPC and TCB evaluation data number, unless
    /// what is there for that number is newer (issued later, or valid
    /// longer). Returns whether it was kept.
    pub fn insert(&self, c: VerifiedCollateral) -> bool {
        let Ok(mut map) = self.entries.write() else {
            return false;
        };
        let key = (tee_of(&c), c.tcb_info.fmspc);
        let number = c.tcb_info.tcb_evaluation_data_number;
        if !map.contains_key(&key) && map.len() >= MAX_ENTRIES {
            return false;
        }
        let numbers = map.entry(key).or_default();
        if let Some(old) = numbers.get(&number)
            && (c.valid_until, c.valid_from) < (old.valid_until, old.valid_from)
        {
            return false;
        }
        if !numbers.contains_key(&number) && numbers.len() >= MAX_NUMBERS_PER_FMSPC {
            match numbers.keys().next() {
                Some(&lowest) if lowest < number => {
                    numbers.remove(&lowest);
                }
                _ => return false,
            }
        }
        numbers.insert(number, Arc::new(c));
        true
    }

    /// The current SGX collateral for `fmspc` valid at `time`, if any.
    pub fn get(&self, fmspc: &[u8; 6], time: VerificationTime) -> Option<Arc<VerifiedCollateral>> {
        self.get_for(TeeType::Sgx, fmspc, time)
    }

    /// The current collateral of `tee` for `fmspc` — the highest TCB
    /// evaluation data number held — if it is valid at `time`. An older
    /// number is never used in its place: that would quietly judge the
    /// quote by a laxer baseline than the newest one known.
    pub fn get_for(
        &self,
        tee: TeeType,
        fmspc: &[u8; 6],
        time: VerificationTime,
    ) -> Option<Arc<VerifiedCollateral>> {
        let map = self.entries.read().ok()?;
        let (_, c) = map.get(&(tee, *fmspc))?.last_key_value()?;
        c.check_time(time).ok()?;
        Some(c.clone())
    }

    /// The collateral of `tee` for `fmspc` at exactly TCB evaluation data
    /// number `number` (a policy's TCB baseline), if it is valid at `time`.
    pub fn get_baseline(
        &self,
        tee: TeeType,
        fmspc: &[u8; 6],
        number: u32,
        time: VerificationTime,
    ) -> Option<Arc<VerifiedCollateral>> {
        let map = self.entries.read().ok()?;
        let c = map.get(&(tee, *fmspc))?.get(&number)?;
        c.check_time(time).ok()?;
        Some(c.clone())
    }

    /// Records that an SGX quote of `fmspc` (PCK CA `ca`) found no
    /// current collateral.
    pub fn note_miss(&self, fmspc: [u8; 6], ca: &'static str) {
        self.note_miss_for(TeeType::Sgx, fmspc, ca);
    }

    /// Records that a quote of `tee` and `fmspc` (PCK CA `ca`) found no
    /// current collateral.
    pub fn note_miss_for(&self, tee: TeeType, fmspc: [u8; 6], ca: &'static str) {
        self.note(tee, fmspc, None, ca);
    }

    /// Records that a quote whose policy pins TCB evaluation data number
    /// `number` found no collateral for it.
    pub fn note_baseline_miss(&self, tee: TeeType, fmspc: [u8; 6], number: u32, ca: &'static str) {
        self.note(tee, fmspc, Some(number), ca);
    }

    fn note(&self, tee: TeeType, fmspc: [u8; 6], baseline: Option<u32>, ca: &'static str) {
        if let Ok(mut m) = self.misses.lock()
            && m.len() < MAX_ENTRIES
        {
            m.insert(((tee, fmspc), baseline), ca);
        }
    }

    /// The misses recorded since the last call.
    pub fn take_misses(&self) -> Vec<Miss> {
        self.misses
            .lock()
            .map(|mut m| {
                m.drain()
                    .map(|(((tee, fmspc), baseline), ca)| Miss {
                        tee,
                        fmspc,
                        baseline,
                        ca,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every bundle held: what a source needs to refresh it.
    pub fn list(&self) -> Vec<Held> {
        let Ok(map) = self.entries.read() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for ((tee, fmspc), numbers) in map.iter() {
            let newest = numbers.keys().next_back().copied();
            for (number, c) in numbers {
                out.push(Held {
                    tee: *tee,
                    fmspc: *fmspc,
                    tcb_evaluation_data_number: *number,
                    newest: Some(*number) == newest,
                    valid_until: c.valid_until,
                    ca: ca_kind(c),
                });
            }
        }
        out
    }

    /// The TCB evaluation data numbers held for `tee` (any FMSPC), each
    /// with the newest TCB date its levels carry (the date of that TCB
    /// recovery, as seconds and text): what `GET /tcbbaselines` lists.
    pub fn evaluation_numbers(&self, tee: TeeType) -> BTreeMap<u32, (u64, String)> {
        let mut out: BTreeMap<u32, (u64, String)> = BTreeMap::new();
        let Ok(map) = self.entries.read() else {
            return out;
        };
        for ((t, _), numbers) in map.iter() {
            if *t != tee {
                continue;
            }
            for (number, c) in numbers {
                let Some(level) = c.tcb_info.levels.iter().max_by_key(|l| l.tcb_date_unix) else {
                    continue;
                };
                let slot = out.entry(*number).or_insert((0, String::new()));
                if level.tcb_date_unix >= slot.0 {
                    *slot = (level.tcb_date_unix, level.tcb_date.clone());
                }
            }
        }
        out
    }
}

/// `processor` or `platform`: the PCK CA whose CRL `c` carries.
fn ca_kind(c: &VerifiedCollateral) -> &'static str {
    if c.pck_crl.issuer_text.contains("Platform") {
        "platform"
    } else {
        "processor"
    }
}
