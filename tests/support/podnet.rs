//! Pod subnets for tests that make real pod networks. Tests run in parallel (under nextest
//! each in its own process, next to other test binaries), so each claims a /24 of its
//! range with an flock on a file in the temp dir (released by the kernel even if the
//! process dies) and uses the bridge named after it.

#![allow(dead_code)]

use std::fs::File;
use std::process::Command;

use moor::kubelet::network::{Network, NetworkConfig};
use nix::fcntl::{Flock, FlockArg};

/// Claims a free `10.{second}.N.0/24` whose bridge will be `{bridge_prefix}N`: an flock
/// held as long as the returned lock lives, and no route to that subnet on the host
/// through any other interface (something else using it).
pub fn claim_subnet(second: u8, bridge_prefix: &str) -> (u8, Flock<File>) {
    let start = (std::process::id() as usize + fastrand::usize(..)) % 250;
    for i in 0..250 {
        let n = ((start + i) % 250 + 1) as u8;
        let path = std::env::temp_dir().join(format!("moor-test-podnet-10.{second}.{n}.lock"));
        let Ok(file) = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
        else {
            continue;
        };
        let Ok(lock) = Flock::lock(file, FlockArg::LockExclusiveNonblock) else {
            continue;
        };
        let routes = Command::new("ip")
            .args([
                "-4",
                "route",
                "show",
                "to",
                "match",
                &format!("10.{second}.{n}.0/24"),
            ])
            .output()
            .expect("ip (iproute2) is installed");
        let prefix = format!("10.{second}.");
        let own = format!("dev {bridge_prefix}{n} ");
        let foreign = String::from_utf8_lossy(&routes.stdout)
            .lines()
            .any(|l| l.starts_with(&prefix) && !l.contains(&own));
        if !foreign {
            return (n, lock);
        }
    }
    panic!("no free 10.{second}.N.0/24 test subnet");
}

/// Tears down every pod network an agent left under `config` (through the code under
/// test, which also removes the plugins' rules) and deletes its bridge. Runs on a thread
/// with its own runtime: callers are `Drop`s that may run inside a test's runtime.
pub fn teardown_networks(config: &NetworkConfig) {
    if let Ok(net) = Network::new(config.clone()) {
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                for uid in net.pods().await.ok()? {
                    let _ = net.teardown(&uid).await;
                }
                let _ = net.release_netns_dir();
                Some(())
            })
        })
        .join();
    }
    let _ = Command::new("ip")
        .args(["link", "del", &config.bridge])
        .output();
}

/// The IPv4 addresses on `lo` starting with `prefix`, as `ip` prints them (`a.b.c.d/len`).
pub fn lo_addresses(prefix: &str) -> Vec<String> {
    let Ok(out) = Command::new("ip")
        .args(["-4", "-o", "addr", "show", "dev", "lo"])
        .output()
    else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(3).map(str::to_owned))
        .filter(|a| a.starts_with(prefix))
        .collect()
}

/// Remove the addresses on `lo` starting with `prefix` (e.g. `10.210.7.`): cluster IPs a
/// killed agent's service proxy could not release.
pub fn remove_lo_addresses(prefix: &str) {
    for addr in lo_addresses(prefix) {
        let _ = Command::new("ip")
            .args(["addr", "del", &addr, "dev", "lo"])
            .output();
    }
}
