//! `bench-report`: prints criterion's results as a Markdown table of ratios.
//!
//! Run after `cargo bench -p aver-bench`:
//!
//! ```text
//! cargo run -p aver-bench --bin bench-report [-- --dir DIR] [--all]
//! ```
//!
//! Each group's `baseline_*` benchmark is the divisor of the group's other
//! rows; the `× ECDSA` column divides by `sgx/baseline_ecdsa_p256_verify`
//! (or `pipeline/…` when `sgx` was not run) to compare across groups.
//! Results are read from `DIR` (default: `$CRITERION_HOME`, else
//! `$CARGO_TARGET_DIR/criterion`, else `<workspace>/target/criterion`).
//! Unless `--all` is given, results older than 3 hours before the newest one
//! are left out, so that a table only mixes numbers of one run.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde_json::Value;

struct Row {
    group: String,
    id: String,
    median_ns: f64,
    mean_ns: f64,
    mean_lo: f64,
    mean_hi: f64,
    modified: SystemTime,
}

fn criterion_dir(explicit: Option<PathBuf>) -> PathBuf {
    if let Some(d) = explicit {
        return d;
    }
    if let Some(d) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(d).join("criterion");
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/criterion")
}

fn collect(dir: &Path, out: &mut Vec<Row>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        if path.file_name().is_some_and(|n| n == "new") {
            if let Some(row) = read_row(&path) {
                out.push(row);
            }
        } else if path
            .file_name()
            .is_none_or(|n| n != "report" && n != "base")
        {
            collect(&path, out);
        }
    }
}

fn read_json(path: &Path) -> Option<Value> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

fn read_row(new_dir: &Path) -> Option<Row> {
    let bench = read_json(&new_dir.join("benchmark.json"))?;
    let estimates_path = new_dir.join("estimates.json");
    let est = read_json(&estimates_path)?;
    let modified = std::fs::metadata(&estimates_path).ok()?.modified().ok()?;
    let group = bench.get("group_id")?.as_str()?.to_string();
    let full = bench.get("full_id")?.as_str()?;
    let id = full
        .strip_prefix(&format!("{group}/"))
        .unwrap_or(full)
        .to_string();
    let point = |k: &str| est.get(k)?.get("point_estimate")?.as_f64();
    let ci = |bound: &str| {
        est.get("mean")?
            .get("confidence_interval")?
            .get(bound)?
            .as_f64()
    };
    Some(Row {
        group,
        id,
        median_ns: point("median")?,
        mean_ns: point("mean")?,
        mean_lo: ci("lower_bound")?,
        mean_hi: ci("upper_bound")?,
        modified,
    })
}

fn human(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.1} ns")
    }
}

fn ratio(x: f64, base: Option<f64>) -> String {
    match base {
        Some(b) if b > 0.0 => {
            let r = x / b;
            if r >= 100.0 {
                format!("{r:.0}×")
            } else if r >= 10.0 {
                format!("{r:.1}×")
            } else if r >= 1.0 {
                format!("{r:.2}×")
            } else {
                // Three significant digits for small ratios (0.00105×).
                let digits = (2.0 - r.log10().floor()).clamp(2.0, 9.0) as usize;
                format!("{r:.digits$}×")
            }
        }
        _ => "–".into(),
    }
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut dir = None;
    let mut all = false;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--dir" => dir = args.next().map(PathBuf::from),
            "--all" => all = true,
            other => {
                eprintln!("usage: bench-report [--dir DIR] [--all] (unknown argument {other})");
                std::process::exit(2);
            }
        }
    }
    let dir = criterion_dir(dir);
    let mut rows = Vec::new();
    collect(&dir, &mut rows);
    if rows.is_empty() {
        eprintln!(
            "no criterion results under {}; run `cargo bench -p aver-bench` first",
            dir.display()
        );
        std::process::exit(1);
    }
    if !all && let Some(newest) = rows.iter().map(|r| r.modified).max() {
        let cutoff = newest - Duration::from_secs(3 * 3600);
        let before = rows.len();
        rows.retain(|r| r.modified >= cutoff);
        if rows.len() < before {
            eprintln!(
                "left out {} stale result(s) (older than 3 h before the newest; --all keeps them)",
                before - rows.len()
            );
        }
    }
    let find = |group: &str, id: &str| {
        rows.iter()
            .find(|r| r.group == group && r.id == id)
            .map(|r| r.median_ns)
    };
    let ecdsa = find("sgx", "baseline_ecdsa_p256_verify")
        .or_else(|| find("pipeline", "baseline_ecdsa_p256_verify"));

    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "Machine: {} core(s), {}. Criterion median of each benchmark; ratios are to the \
         group's `baseline_*` and to one raw ECDSA-P256 verify, measured in the same run.\n",
        cores,
        cpu_model()
    );
    println!("| group | benchmark | median | mean (95% CI) | × group baseline | × ECDSA verify |");
    println!("|---|---|---:|---:|---:|---:|");
    let mut groups: Vec<&str> = Vec::new();
    for r in &rows {
        if !groups.contains(&r.group.as_str()) {
            groups.push(&r.group);
        }
    }
    for g in &groups {
        let mut members: Vec<&Row> = rows.iter().filter(|r| r.group == *g).collect();
        // Baseline first, then the rest in criterion's (alphabetical) order.
        members.sort_by_key(|r| !r.id.starts_with("baseline_"));
        let base = members
            .iter()
            .find(|r| r.id.starts_with("baseline_"))
            .map(|r| r.median_ns);
        for r in members {
            let name = if r.id.starts_with("baseline_") {
                format!("**{}**", r.id)
            } else {
                format!("`{}`", r.id)
            };
            println!(
                "| {g} | {name} | {} | {} ({}–{}) | {} | {} |",
                human(r.median_ns),
                human(r.mean_ns),
                human(r.mean_lo),
                human(r.mean_hi),
                ratio(r.median_ns, base),
                ratio(r.median_ns, ecdsa),
            );
        }
    }

    // Shares of the per-request cost, when the pipeline group was run.
    let pipeline: Vec<&Row> = rows.iter().filter(|r| r.group == "pipeline").collect();
    let by_prefix = |p: &str| {
        pipeline
            .iter()
            .find(|r| r.id.starts_with(p))
            .map(|r| r.median_ns)
    };
    if let (Some(attest), Some(sign), Some(both)) = (
        by_prefix("attest_sgx/"),
        by_prefix("sign_jwt/"),
        by_prefix("attest_sgx_and_sign/"),
    ) {
        println!();
        println!(
            "Per request (pipeline group): verification + claims + policy = {} ({:.0}% of \
             attest+sign), RS256 token signing = {} ({:.0}%), attest+sign = {}.",
            human(attest),
            100.0 * attest / both,
            human(sign),
            100.0 * sign / both,
            human(both)
        );
        if let Some(full) = by_prefix("request_body_to_response/") {
            println!(
                "Whole handler path from body bytes to response bytes (adds JSON and \
                 base64url) = {} ({:+.0}% against attest+sign).",
                human(full),
                100.0 * (full - both) / both
            );
        }
    }
}
