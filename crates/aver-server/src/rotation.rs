//! Scheduled key rotation: `aver serve --rotate-keys-every`.
//!
//! Why: rotation by hand (`aver keys rotate`, then `aver keys retire` once
//! the new key signs) is easy to forget, and how long a stolen signing key
//! stays useful is bounded only by how often keys change. With a schedule,
//! each provider gets a new key every period with the same guarantees as a
//! rotation by hand (see [`crate::keys`]): the next key is in `/certs` for
//! the publish delay before any replica signs with it, and a superseded key
//! stays published until every token it signed has expired.
//!
//! Every replica runs the schedule, once per refresh interval, from the
//! keys it has loaded (no database query unless something is due). For
//! each provider, at time `now`:
//!
//! * **rotate** when the newest key is the one signing and has signed for
//!   `every − publish_delay`: a new key of the provider's algorithm,
//!   published now and signing `publish_delay` later, so that each key
//!   signs for `every`;
//! * **retire** every older key that is neither retired nor signing, once
//!   the key that superseded it has signed for [`RETIRE_AFTER_SECS`] (far
//!   beyond the replicas' refresh bound and ordinary clock skew), whether or
//!   not that successor still signs. A retired key stays in `/certs` for
//!   [`crate::keys::RETIRED_PUBLISH_SECS`] more.
//!
//! Races between replicas are the store's to decide: a scheduled rotation
//! is written only while the newest key not retired is still the one the
//! replica saw
//! ([`crate::store::Store::add_signing_key`] with `after`), in one
//! serialized write, so replicas due at the same moment add one key between
//! them; a retirement another replica made first is a no-op.
//!
//! A provider whose signing key lives in a PKCS#11 token is left alone: a
//! scheduled rotation would replace the token key with a software key.
//! Rotate such keys with `aver keys import-hsm` and `aver keys retire`.
//! Every change is audited with the actor [`ACTOR`].

use std::sync::Arc;

use crate::keys::{self, KeyOpError, KeyTimes};
use crate::state::AppState;
use crate::store::StoreError;

/// The audit log's actor for scheduled changes.
pub const ACTOR: &str = "aver serve (scheduled rotation)";

/// How long the key that superseded another must have been signing before
/// the schedule retires the other.
pub const RETIRE_AFTER_SECS: i64 = 60;

/// A rotation period and the publish delay of the keys it makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    every: u64,
    publish_delay: u64,
}

impl Schedule {
    /// A new key every `every` seconds, each published `publish_delay`
    /// seconds before it signs. The delay must be shorter than the period
    /// (a key waits to sign for less time than it then signs) and at most a
    /// week, like a rotation by hand.
    pub fn new(every: u64, publish_delay: u64) -> Result<Schedule, String> {
        if publish_delay > keys::MAX_PUBLISH_DELAY_SECS {
            return Err(format!(
                "the rotation publish delay must be at most {} seconds (a week), not {publish_delay}",
                keys::MAX_PUBLISH_DELAY_SECS
            ));
        }
        if every <= publish_delay {
            return Err(format!(
                "the rotation period ({every} s) must be longer than the publish delay of its keys ({publish_delay} s)"
            ));
        }
        Ok(Schedule {
            every,
            publish_delay,
        })
    }

    pub fn every(&self) -> u64 {
        self.every
    }

    pub fn publish_delay(&self) -> u64 {
        self.publish_delay
    }
}

/// What the schedule asks of one provider's keys.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Due {
    /// Rotate now, conditioned on this kid still being the newest key not
    /// retired.
    pub rotate_after: Option<String>,
    /// Retire these (superseded, not signing, not retired) keys now.
    pub retire: Vec<String>,
}

/// What `schedule` asks at `now` of keys with these schedules (any
/// order). Pure: the caller's clock and the loaded keys are the inputs.
pub fn due(times: &[&KeyTimes], now: i64, schedule: &Schedule) -> Due {
    let mut out = Due::default();
    let Some(signing) = keys::signing_index(times, now) else {
        return out;
    };
    let Some(current) = times.get(signing).filter(|t| t.can_sign(now)) else {
        // Nothing can sign yet (every live key is a next key): nothing due.
        return out;
    };
    // The newest key not retired (ties: the first, as the store orders
    // them): a next key someone retired does not hold the schedule up. The
    // store checks the same, so the insert is refused only if another key
    // was added (or this one retired) meanwhile.
    let newest = times
        .iter()
        .enumerate()
        .filter(|(_, t)| t.retired_at.is_none())
        .max_by_key(|(i, t)| (t.created_at, std::cmp::Reverse(*i)))
        .map(|(i, _)| i);
    let period = i64::try_from(schedule.every).unwrap_or(i64::MAX);
    let delay = i64::try_from(schedule.publish_delay).unwrap_or(i64::MAX);
    if newest == Some(signing) && now >= current.not_before_signing.saturating_add(period - delay) {
        out.rotate_after = Some(current.kid.clone());
    }
    // A key stopped signing when the first key ordered after it (as the
    // signing key is chosen: by `not_before_signing`, then creation) began
    // to; it is retired once that successor has signed for the grace time,
    // whatever signs now (a short period may have superseded it since).
    let order = |t: &KeyTimes| (t.not_before_signing, t.created_at);
    out.retire = times
        .iter()
        .enumerate()
        .filter(|(i, t)| *i != signing && t.retired_at.is_none() && t.can_sign(now))
        .filter(|(_, t)| {
            let superseded_at = times
                .iter()
                .filter(|s| s.can_sign(now) && order(s) > order(t))
                .map(|s| s.not_before_signing)
                .min();
            superseded_at.is_some_and(|at| now >= at.saturating_add(RETIRE_AFTER_SECS))
        })
        .map(|(_, t)| t.kid.clone())
        .collect();
    out
}

/// One pass of the schedule over every loaded provider; reloads the
/// providers when it changed anything.
pub async fn round(state: &AppState, schedule: &Schedule) {
    let now = state.clock.now();
    let now_i = i64::try_from(now).unwrap_or(i64::MAX);
    let mut work = Vec::new();
    if let Ok(providers) = state.providers.read() {
        for provider in providers.by_name.values() {
            let times = provider.keys.schedules();
            let due = due(&times, now_i, schedule);
            if due == Due::default() {
                continue;
            }
            let token_key = provider.keys.signing(now).is_some_and(|k| k.is_remote());
            if token_key && due.rotate_after.is_some() {
                tracing::debug!(
                    provider = %provider.name,
                    "scheduled rotation skipped: the signing key is in a PKCS#11 token"
                );
            }
            work.push((
                provider.name.clone(),
                provider.settings.token_alg(),
                Due {
                    rotate_after: due.rotate_after.filter(|_| !token_key),
                    retire: due.retire,
                },
            ));
        }
    }
    if work.iter().all(|(_, _, d)| *d == Due::default()) {
        return;
    }
    let kek = Arc::clone(&state.loader.kek);
    let delay = schedule.publish_delay;
    let changed = state
        .blocking(move |store| {
            let mut changed = false;
            for (provider, alg, due) in work {
                if let Some(after) = &due.rotate_after {
                    match keys::rotate_after(
                        store,
                        &kek,
                        &provider,
                        alg,
                        now,
                        delay,
                        ACTOR,
                        Some(after),
                    ) {
                        Ok(key) => {
                            changed = true;
                            tracing::info!(
                                provider = %provider,
                                kid = %key.kid,
                                signing_from = key.not_before_signing,
                                after = %after,
                                "scheduled rotation: a new signing key is published"
                            );
                        }
                        Err(KeyOpError::Store(StoreError::Superseded(_))) => {
                            tracing::debug!(provider = %provider, "scheduled rotation: another replica rotated first");
                        }
                        Err(e) => {
                            tracing::warn!(provider = %provider, error = %e, "scheduled rotation failed; retrying at the next refresh");
                        }
                    }
                }
                for kid in &due.retire {
                    match keys::retire(store, &provider, kid, now, ACTOR) {
                        Ok(_) => {
                            changed = true;
                            tracing::info!(
                                provider = %provider,
                                kid = %kid,
                                "scheduled rotation: a superseded key is retired (published until its tokens expired)"
                            );
                        }
                        Err(KeyOpError::AlreadyRetired(_)) => {}
                        Err(e) => {
                            tracing::warn!(provider = %provider, kid = %kid, error = %e, "scheduled retirement failed; retrying at the next refresh");
                        }
                    }
                }
            }
            Ok(changed)
        })
        .await;
    match changed {
        Ok(true) => {
            if let Err(e) = state.reload().await {
                tracing::warn!(code = e.code, message = %e.message, "reload after a scheduled rotation failed");
            }
        }
        Ok(false) => {}
        Err(e) => tracing::warn!(code = e.code, message = %e.message, "scheduled rotation failed"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::keys::tests::t;

    const DAY: u64 = 86_400;

    fn schedule() -> Schedule {
        // A key a day, each published an hour before it signs.
        Schedule::new(DAY, 3600).unwrap()
    }

    fn at(keys: &[KeyTimes], now: i64) -> Due {
        let refs: Vec<&KeyTimes> = keys.iter().collect();
        due(&refs, now, &schedule())
    }

    #[test]
    fn a_schedule_needs_a_period_longer_than_its_publish_delay() {
        assert!(Schedule::new(3600, 3600).is_err());
        assert!(Schedule::new(60, 300).unwrap_err().contains("longer"));
        assert!(
            Schedule::new(30 * DAY, 8 * DAY)
                .unwrap_err()
                .contains("a week")
        );
        assert_eq!(Schedule::new(DAY, 0).unwrap().every(), DAY);
    }

    #[test]
    fn the_signing_key_is_rotated_a_publish_delay_before_its_period_ends() {
        let keys = [t("a", 0, 0, None)];
        // Signing since 0; the next key must sign at 0 + 1 day, so it is
        // made at 1 day - 1 hour.
        assert_eq!(at(&keys, 0), Due::default());
        assert_eq!(at(&keys, 82_799), Due::default());
        assert_eq!(at(&keys, 82_800).rotate_after.as_deref(), Some("a"));
        // Late (a replica was down): rotated at once, never twice.
        assert_eq!(
            at(&keys, 10 * DAY as i64).rotate_after.as_deref(),
            Some("a")
        );
    }

    #[test]
    fn nothing_is_rotated_while_a_next_key_waits_to_sign() {
        // Rotated at 82,800: "b" signs from 86,400.
        let keys = [t("b", 82_800, 86_400, None), t("a", 0, 0, None)];
        for now in [82_800, 86_399, 86_400, 86_400 + 82_799] {
            assert_eq!(at(&keys, now).rotate_after, None, "at {now}");
        }
        // A day after "b" began signing, less the delay: "b" is rotated.
        assert_eq!(
            at(&keys, 86_400 + 82_800).rotate_after.as_deref(),
            Some("b")
        );
        // A next key made by hand, newer than the signing key: no schedule
        // rotation until it signs either.
        let manual = [t("m", 50, 10_000, None), t("a", 0, 0, None)];
        assert_eq!(at(&manual, 9_999).rotate_after, None);
    }

    #[test]
    fn a_retired_next_key_does_not_hold_the_schedule_up() {
        // "n" was made by hand and retired before it signed: "a" still
        // signs, is the newest live key and is due.
        let keys = [t("n", 50_000, 60_000, Some(55_000)), t("a", 0, 0, None)];
        assert_eq!(at(&keys, 82_800).rotate_after.as_deref(), Some("a"));
        assert!(at(&keys, 82_800).retire.is_empty());
    }

    #[test]
    fn superseded_keys_are_retired_a_minute_after_their_successor_signs() {
        let keys = [t("b", 82_800, 86_400, None), t("a", 0, 0, None)];
        // Before "b" signs, "a" is the signing key: nothing to retire.
        assert!(at(&keys, 86_399).retire.is_empty());
        assert!(at(&keys, 86_400 + 59).retire.is_empty());
        assert_eq!(at(&keys, 86_400 + 60).retire, ["a"]);
        // Already retired keys and the signing key never are.
        let done = [t("b", 82_800, 86_400, None), t("a", 0, 0, Some(86_460))];
        assert!(at(&done, 90_000).retire.is_empty());
        // Several superseded keys (rotations by hand never retired) go at once;
        // a next key is not superseded.
        let many = [
            t("n", 90_000, 200_000, None),
            t("c", 1_000, 1_000, None),
            t("b", 500, 500, None),
            t("a", 0, 0, None),
        ];
        assert_eq!(at(&many, 90_000).retire, ["b", "a"]);
        assert_eq!(at(&many, 90_000).rotate_after, None);
    }

    #[test]
    fn a_period_shorter_than_the_grace_still_retires_each_key_a_minute_after_its_successor_signs() {
        // A key every 20 s, published 5 s before it signs: "a" signed until
        // 20, "b" until 40, "c" until 60, "d" signs from 60.
        let short = Schedule::new(20, 5).unwrap();
        let keys = [
            t("d", 55, 60, None),
            t("c", 35, 40, None),
            t("b", 15, 20, None),
            t("a", 0, 0, None),
        ];
        let refs: Vec<&KeyTimes> = keys.iter().collect();
        assert!(due(&refs, 79, &short).retire.is_empty());
        assert_eq!(due(&refs, 80, &short).retire, ["a"]);
        assert_eq!(due(&refs, 100, &short).retire, ["b", "a"]);
        assert_eq!(due(&refs, 120, &short).retire, ["c", "b", "a"]);
        assert_eq!(due(&refs, 75, &short).rotate_after.as_deref(), Some("d"));
    }

    #[test]
    fn a_provider_whose_keys_are_all_retired_or_next_is_left_alone() {
        assert_eq!(at(&[], 1_000_000), Due::default());
        let next_only = [t("n", 0, 500_000, None)];
        assert_eq!(at(&next_only, 1_000), Due::default());
    }
}
