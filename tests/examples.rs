//! The walkthroughs in examples/ run as documented: each script exits 0 against the real
//! binary, kubectl and git (the two-node example also against containerd, runc and the CNI
//! plugins, as root).

use std::process::Command;

#[test]
fn the_gitops_walkthrough_runs() {
    let out = Command::new("bash")
        .arg("examples/gitops/walkthrough.sh")
        .env("MOOR", env!("CARGO_BIN_EXE_moor"))
        .env("KEEP_LOG", "1")
        // Scheduling must not depend on how full the test machine's disk is.
        .env("MOOR_DISK_PRESSURE_BELOW", "0")
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

#[test]
fn the_two_nodes_example_runs() {
    let out = Command::new("bash")
        .arg("examples/two-nodes/run.sh")
        .env("MOOR", env!("CARGO_BIN_EXE_moor"))
        .env("KEEP_LOG", "1")
        // Scheduling must not depend on how full the test machine's disk is.
        .env("MOOR_DISK_PRESSURE_BELOW", "0")
        .env_remove("KUBECONFIG")
        .output()
        .expect("run the two-node example");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "two-node example failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Every pod answered from the host, on both nodes, before node2 died.
    assert_eq!(
        stdout.matches(" answers: two-nodes-web-").count(),
        4,
        "{stdout}"
    );
    assert!(stdout.contains("replaced on node1: done"), "{stdout}");
    // Nothing is left behind: the cleanup removed the namespace and the bridges.
    let links = Command::new("ip").args(["-o", "link"]).output().unwrap();
    let links = String::from_utf8_lossy(&links.stdout);
    for name in ["moor2b1", "moor2b2", "moor2-host"] {
        assert!(!links.contains(name), "{name} left behind:\n{links}");
    }
    let namespaces = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(
        !String::from_utf8_lossy(&namespaces.stdout).contains("moor-node2"),
        "network namespace moor-node2 left behind"
    );
}
