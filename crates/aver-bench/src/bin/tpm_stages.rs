//! `tpm-stages`: runs one stage of the `tpm_attest` bench's work `N` times on
//! the bench's exact inputs, for counting instructions under callgrind
//! (noise-free, unlike wall-clock on a shared machine).
//!
//! ```text
//! cargo build --release -p aver-bench --bin tpm-stages
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!     target/release/tpm-stages STAGE N
//! ```
//!
//! STAGE is `floor` (the RSA check, PCR digest and one hash per extend),
//! `quote` (`verify_quote`), `replay` (`parse_event_log` + `replay`),
//! `policy` (`Policy::evaluate` of the Secure Boot / HVCI sample),
//! `all` (quote + replay + policy, as the bench's `quote_replay_policy`) or
//! `none` (set-up only). Instructions per run of a stage:
//! `(Ir(STAGE, N2) - Ir(STAGE, N1)) / (N2 - N1)`, which removes the set-up.
//!
//! Valgrind does not execute the CPU's SHA extensions (it hides them from
//! CPUID), so under callgrind the `sha1`/`sha2` crates the replay uses run
//! their portable code while aws-lc (the floor) runs its AVX code: hashing
//! weighs differently there than on the machine. `tpm-stages time [ROUNDS]`
//! measures natively instead: every stage, interleaved, ROUNDS times
//! (default 200), keeping each stage's fastest batch — the minimum, unlike
//! a mean or median, is barely moved by other load on a shared machine —
//! and prints microseconds per run and each stage's ratio to the floor, and
//! the whole against `floor-tight` (the floor hashing through the `sha1`/
//! `sha2` crates the replay uses, cheaper per extend than aws-lc-rs's
//! digest API: the stricter ratio).
// A benchmark tool on fixed inputs: a failed set-up is a bug to stop at.
#![allow(clippy::expect_used, clippy::panic)]

use std::hint::black_box;

use aver_bench::TpmAttest;

fn main() {
    let mut args = std::env::args().skip(1);
    let stage = args.next().unwrap_or_else(|| "none".into());
    let n: u32 = args.next().and_then(|v| v.parse().ok()).unwrap_or(1);
    let work = TpmAttest::load();
    let floor = || black_box(&work.floor).run();
    let quote = || work.quote();
    let parse_replay = || work.parse_and_replay();
    let evaluate = || work.policy();
    if stage == "time" {
        let rounds = if n > 1 { n } else { 200 };
        let tight = || black_box(&work.floor).run_tight();
        let stages: [(&str, &dyn Fn() -> bool); 6] = [
            ("floor", &floor),
            ("quote", &quote),
            ("replay", &parse_replay),
            ("policy", &evaluate),
            ("all", &|| work.all()),
            ("floor-tight", &tight),
        ];
        let mut best = [f64::MAX; 6];
        const BATCH: u32 = 20;
        for _ in 0..rounds {
            for ((_, f), b) in stages.iter().zip(best.iter_mut()) {
                let t = std::time::Instant::now();
                for _ in 0..BATCH {
                    assert!(f(), "a stage failed");
                }
                *b = b.min(t.elapsed().as_secs_f64() * 1e6 / f64::from(BATCH));
            }
        }
        for ((name, _), b) in stages.iter().zip(best) {
            println!("{name:11} {b:8.2} us  {:5.2}x floor", b / best[0]);
        }
        // The stricter ratio: against the floor hashing as cheaply as the
        // replay can (`TpmFloor::run_tight`).
        println!(
            "all / floor-tight: {:5.2}x",
            best[4] / best[5].max(f64::MIN_POSITIVE)
        );
        return;
    }
    let mut ok = true;
    for _ in 0..n {
        ok &= match stage.as_str() {
            "floor" => floor(),
            "quote" => quote(),
            "replay" => parse_replay(),
            "policy" => evaluate(),
            "all" => work.all(),
            "none" => true,
            other => {
                panic!("unknown stage {other:?} (floor, quote, replay, policy, all, none, time)")
            }
        };
    }
    assert!(ok, "stage {stage} failed");
    println!("stage={stage} n={n} ok");
}
