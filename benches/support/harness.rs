//! What the benchmark programs share: command-line options, percentiles, /proc readings,
//! child processes tied to the bench, and the measure of other processes' CPU use.

#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use moor::kubelet::network::{Network, NetworkConfig};

/// The value after `name` on the command line, parsed; `default` when absent or unparsable.
pub fn arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub fn arg_str(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

/// Nearest-rank percentile of `xs` (any order), `p` in (0, 1].
pub fn pct(xs: &[f64], p: f64) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

pub fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// A field of /proc/PID/status in KiB (VmRSS, VmHWM).
pub fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

pub fn clock_hz() -> f64 {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) as f64 }
}

/// A child that the kernel kills when this process dies (a Ctrl-C of the bench).
pub fn spawn_tied(cmd: &mut Command) -> std::io::Result<Child> {
    // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches no parent memory.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn()
}

/// Reads `child`'s stdout until a line starting with `prefix` (then drains it on a thread);
/// panics with `log`'s tail if the process exits first.
pub fn wait_for_line(child: &mut Child, prefix: &str, log: &Path) {
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    loop {
        match lines.next() {
            Some(Ok(line)) if line.starts_with(prefix) => break,
            Some(Ok(_)) => continue,
            _ => panic!(
                "the process exited before printing {prefix:?}; its log:\n{}",
                tail(log)
            ),
        }
    }
    std::thread::spawn(move || for _ in lines {});
}

pub fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// CPU time used by processes that are not the bench's (other people's builds and tests
/// on this shared machine): it inflates every figure, so the bench says how much there was.
/// Ours are the bench's descendants (server, agent, CNI plugins, containerd) and the
/// descendants of our containerd's shims (runc, loggers, the pod's servers); kernel threads
/// are left out. Sampled every 200 ms, so processes living shorter than that are missed.
#[derive(Clone, Default)]
pub struct Contention(Arc<Mutex<HashMap<String, u64>>>);

/// (ppid, comm, utime + stime, starttime) from /proc/PID/stat, times in clock ticks.
pub fn proc_stat(pid: u32) -> Option<(u32, String, u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (head, rest) = stat.rsplit_once(')')?;
    let comm = head.split_once('(')?.1.to_owned();
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the command: state is field 3 (index 0), ppid 4, utime 14, stime 15,
    // starttime 22.
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
    Some((
        u32::try_from(num(1)?).ok()?,
        comm,
        num(11)? + num(12)?,
        num(19)?,
    ))
}

impl Contention {
    pub fn start(containerd_dir: String) -> Contention {
        let c = Contention::default();
        let total = c.0.clone();
        let me = std::process::id();
        let hz = clock_hz();
        let uptime = || {
            std::fs::read_to_string("/proc/uptime")
                .ok()
                .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        let since = (uptime() * hz) as u64;
        std::thread::spawn(move || {
            let mut last: HashMap<u32, u64> = HashMap::new();
            loop {
                let mut procs = HashMap::new();
                for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
                    let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok())
                    else {
                        continue;
                    };
                    if let Some(st) = proc_stat(pid) {
                        procs.insert(pid, st);
                    }
                }
                let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
                for (pid, (ppid, ..)) in &procs {
                    children.entry(*ppid).or_default().push(*pid);
                }
                let mut ours: HashSet<u32> = HashSet::new();
                let mut todo = vec![me];
                for (pid, (_, comm, ..)) in &procs {
                    if comm.starts_with("containerd-shim")
                        && std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                            c.is_empty() || String::from_utf8_lossy(&c).contains(&containerd_dir)
                        })
                    {
                        todo.push(*pid);
                    }
                }
                while let Some(pid) = todo.pop() {
                    if ours.insert(pid) {
                        todo.extend(children.get(&pid).into_iter().flatten().copied());
                    }
                }
                let mut now = HashMap::new();
                let mut by_comm = total.lock().unwrap();
                for (pid, (ppid, comm, ticks, start)) in &procs {
                    if ours.contains(pid) || *pid == 2 || *ppid == 2 {
                        continue;
                    }
                    let added = match last.get(pid) {
                        Some(before) => ticks.saturating_sub(*before),
                        None if *start >= since => *ticks,
                        None => 0,
                    };
                    if added > 0 {
                        *by_comm.entry(comm.clone()).or_default() += added;
                    }
                    now.insert(*pid, *ticks);
                }
                drop(by_comm);
                last = now;
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        c
    }

    /// CPU seconds used by others since the last call, and by whom (the top three).
    pub fn take(&self) -> (f64, String) {
        let hz = clock_hz();
        let by_comm = std::mem::take(&mut *self.0.lock().unwrap());
        let mut top: Vec<(String, u64)> = by_comm.into_iter().collect();
        top.sort_by_key(|t| std::cmp::Reverse(t.1));
        let total = top.iter().map(|(_, t)| *t).sum::<u64>() as f64 / hz;
        let who = top
            .iter()
            .take(3)
            .map(|(c, t)| format!("{c} {:.1} s", *t as f64 / hz))
            .collect::<Vec<_>>()
            .join(", ");
        (total, who)
    }

    /// Prints and records what others used in `section`, if it matters.
    pub fn report(&self, section: &str, disturbed: &mut Vec<String>) {
        let (others, who) = self.take();
        if others > 0.5 {
            println!("  ({section}: other processes used {others:.1} CPU s meanwhile: {who})");
            disturbed.push(format!("{section}: {others:.1} CPU s"));
        }
    }
}

/// Deletes the bridge when dropped (and any left by an earlier, killed run when made).
pub struct BridgeGuard(&'static str);

impl BridgeGuard {
    pub fn new(bridge: &'static str) -> Self {
        let _ = Command::new("ip").args(["link", "del", bridge]).output();
        BridgeGuard(bridge)
    }
}

impl Drop for BridgeGuard {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", self.0]).output();
    }
}

/// Tears down whatever pod networks the agent left (namespaces, veths, leases, NAT rules)
/// through the agent's own code, once the agent is gone; a no-op after a clean teardown.
pub struct NetworkGuard {
    pub data_dir: PathBuf,
    pub pod_cidr: &'static str,
    pub bridge: &'static str,
}

impl NetworkGuard {
    fn network(&self) -> Option<Network> {
        Network::new(
            NetworkConfig::new(self.pod_cidr, self.data_dir.join("network"))
                .with_bridge(self.bridge),
        )
        .ok()
    }

    /// Pod network records left.
    pub fn left(&self) -> usize {
        std::fs::read_dir(self.data_dir.join("network").join("pods"))
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
                    .count()
            })
            .unwrap_or(0)
    }
}

impl Drop for NetworkGuard {
    fn drop(&mut self) {
        let Some(net) = self.network() else {
            return;
        };
        // Own runtime on a thread: drop may run inside the bench's runtime.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let pods = net.pods().await.ok()?;
                if !pods.is_empty() {
                    eprintln!("  cleaning up {} pod networks left behind", pods.len());
                }
                for uid in pods {
                    let _ = net.teardown(&uid).await;
                }
                let _ = net.release_netns_dir();
                Some(())
            })
        })
        .join();
    }
}

/// Every IPv4 address on the machine as `ip -4 -o addr show` lists it: (address, prefix
/// length, interface).
#[allow(dead_code)]
pub fn local_ipv4_addresses() -> Vec<(std::net::Ipv4Addr, u8, String)> {
    let out = std::process::Command::new("ip")
        .args(["-4", "-o", "addr", "show"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    out.lines()
        .filter_map(|l| {
            // `1: lo    inet 10.230.0.1/32 scope global lo ...`
            let mut words = l.split_whitespace();
            let device = words.nth(1)?.to_owned();
            words.find(|w| *w == "inet")?;
            let (ip, len) = words.next()?.split_once('/')?;
            Some((ip.parse().ok()?, len.parse().ok()?, device))
        })
        .collect()
}
