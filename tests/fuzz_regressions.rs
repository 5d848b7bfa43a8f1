//! Replays the fuzz corpora through the fuzz targets in the normal `cargo test` run: every
//! seed in `fuzz/corpus/<target>/` and every crash reproducer in
//! `fuzz/regressions/<target>/` goes through `moor::fuzzing::<target>`, so a fixed crash
//! that comes back fails here on stable, without cargo-fuzz or nightly.
//!
//! The layout is checked too, so a corpus cannot silently stop being replayed: every folder
//! under `fuzz/corpus/` and `fuzz/regressions/` must name a target and hold at least one
//! file, every target must have a seed corpus and a `fuzz/fuzz_targets/<target>.rs`, and
//! every `fuzz_targets/*.rs` must be a target.

use std::collections::BTreeSet;
use std::fs;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use moor::fuzzing;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The entries of `dir` (sorted, for a stable report), or an empty list when it is absent.
fn entries(dir: &Path) -> Vec<PathBuf> {
    let Ok(read) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = read
        .map(|e| e.expect("read a directory entry").path())
        .collect();
    out.sort();
    out
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Every input of every `<kind>/<target>/` folder, or the layout problems found.
fn inputs(kind: &str, problems: &mut Vec<String>) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    for dir in entries(&fuzz_dir().join(kind)) {
        let target = file_name(&dir);
        if !dir.is_dir() {
            problems.push(format!(
                "fuzz/{kind}/{target} is not a folder named after a target"
            ));
            continue;
        }
        if fuzzing::target(&target).is_none() {
            problems.push(format!(
                "fuzz/{kind}/{target}/ has no function in moor::fuzzing::TARGETS"
            ));
            continue;
        }
        let files: Vec<PathBuf> = entries(&dir)
            .into_iter()
            .filter(|p| p.is_file() && !file_name(p).starts_with('.'))
            .collect();
        if files.is_empty() {
            problems.push(format!("fuzz/{kind}/{target}/ holds no inputs"));
        }
        out.extend(files.into_iter().map(|f| (target.clone(), f)));
    }
    out
}

#[test]
fn every_target_has_a_seed_corpus_and_a_fuzz_target() {
    let mut problems = Vec::new();
    let with_corpus: BTreeSet<String> = entries(&fuzz_dir().join("corpus"))
        .iter()
        .map(|p| file_name(p))
        .collect();
    let bins: BTreeSet<String> = entries(&fuzz_dir().join("fuzz_targets"))
        .iter()
        .filter_map(|p| file_name(p).strip_suffix(".rs").map(str::to_owned))
        .collect();
    for (name, _) in fuzzing::TARGETS {
        if !with_corpus.contains(*name) {
            problems.push(format!("target {name} has no fuzz/corpus/{name}/"));
        }
        if !bins.contains(*name) {
            problems.push(format!("target {name} has no fuzz/fuzz_targets/{name}.rs"));
        }
    }
    for bin in &bins {
        if fuzzing::target(bin).is_none() {
            problems.push(format!(
                "fuzz/fuzz_targets/{bin}.rs has no function in moor::fuzzing::TARGETS"
            ));
        }
    }
    inputs("corpus", &mut problems);
    inputs("regressions", &mut problems);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Runs every input of `kind` through its target, and reports every one that panicked.
fn replay(kind: &str) -> usize {
    let mut problems = Vec::new();
    let inputs = inputs(kind, &mut problems);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    let mut failed = Vec::new();
    for (target, path) in &inputs {
        let run = fuzzing::target(target).expect("checked by inputs()");
        let data = fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        if panic::catch_unwind(AssertUnwindSafe(|| run(&data))).is_err() {
            failed.push(format!(
                "{target}: {} panicked (rerun: cargo +nightly fuzz run {target} {})",
                path.display(),
                path.display()
            ));
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} inputs panicked:\n{}",
        failed.len(),
        inputs.len(),
        failed.join("\n")
    );
    inputs.len()
}

#[test]
fn seed_corpora_replay_without_panics() {
    assert!(replay("corpus") > 0, "no seed inputs at all");
}

#[test]
fn crash_reproducers_replay_without_panics() {
    replay("regressions");
}
