//! The walkthroughs in examples/ run as documented: each script exits 0 against the real
//! binary, kubectl and git.

use std::process::Command;

#[test]
fn the_gitops_walkthrough_runs() {
    let out = Command::new("bash")
        .arg("examples/gitops/walkthrough.sh")
        .env("MOOR", env!("CARGO_BIN_EXE_moor"))
        .env("KEEP_LOG", "1")
        .env_remove("KUBECONFIG")
        .output()
        .expect("run the walkthrough");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "walkthrough failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("nothing left to change"), "{stdout}");
}
