//! The CNI exec protocol: the network configurations moor hands to the plugins, how a
//! chain of plugins is run (ADD in order, each fed the previous result; DEL in reverse,
//! each fed the cached final result), how a plugin binary is executed and how its answer
//! (a result, or an error object) is read.
//!
//! It owns nothing on disk and knows nothing of pods: the caller ([`super::Network`])
//! decides what to cache and where the namespace is. Plugin execution sits behind the
//! [`Runner`] trait so the chain logic can be unit-tested without binaries.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use super::{NetworkConfig, NetworkError, PortMapping};

/// The spec version of every configuration moor writes; Debian's plugins (1.1.1) speak it.
pub(super) const CNI_VERSION: &str = "1.0.0";
/// The network name host-local keys its leases by, and the bridge and portmap plugins
/// derive their iptables chain names from (together with the container ID).
pub(super) const NETWORK_NAME: &str = "moor";
/// The loopback network's name (a separate one-plugin network, as containerd's CRI does).
pub(super) const LOOPBACK_NETWORK_NAME: &str = "moor-loopback";
/// The pod's interface on the bridge.
pub(super) const POD_IFNAME: &str = "eth0";
/// The loopback interface inside the pod.
pub(super) const LOOPBACK_IFNAME: &str = "lo";
/// Every plugin binary moor's networks use.
pub(super) const REQUIRED_PLUGINS: [&str; 4] = ["bridge", "host-local", "loopback", "portmap"];

/// How long one plugin may run. A bridge ADD takes tens of milliseconds; iptables can wait
/// for its lock behind other writers, so leave plenty of room before calling it hung.
const PLUGIN_TIMEOUT: Duration = Duration::from_secs(60);

/// A CNI command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Command {
    Add,
    Del,
}

impl Command {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
        }
    }
}

/// The error object a failing plugin prints on stdout (spec: "Error" section).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CniError {
    /// The error code; 1-99 are the spec's well-known codes, 100+ plugin-specific.
    #[serde(default)]
    pub code: u32,
    /// A short message.
    #[serde(default)]
    pub msg: String,
    /// A longer explanation, often the underlying error.
    #[serde(default)]
    pub details: String,
}

impl fmt::Display for CniError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "code {}: {}", self.code, self.msg)?;
        if !self.details.is_empty() {
            write!(f, " ({})", self.details)?;
        }
        Ok(())
    }
}

/// A network configuration list (the conflist shape): a name, a version and a chain of
/// plugin configurations. Stored in the pod's record so DEL runs with exactly what ADD ran
/// with, even when the node's configuration changed in between.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(super) struct NetworkList {
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    pub name: String,
    pub plugins: Vec<Value>,
}

/// The per-pod values that are not part of a network's configuration.
#[derive(Clone, Debug)]
pub(super) struct Runtime<'a> {
    pub container_id: &'a str,
    /// `None` when the namespace is gone: allowed for DEL, which then only releases state
    /// kept outside the namespace (IP leases, host rules).
    pub netns: Option<&'a Path>,
    pub ifname: &'a str,
    /// CNI_ARGS (`K=V;K=V`).
    pub args: &'a str,
    pub port_mappings: &'a [PortMapping],
}

/// The bridge network: bridge (with host-local IPAM) and, when the pod maps host ports,
/// portmap. Without ports portmap would only echo its prevResult, so it is left out and one
/// exec per pod is saved; the list is cached per pod, so DEL mirrors whatever ADD ran.
pub(super) fn bridge_network(
    config: &NetworkConfig,
    ipam_dir: &Path,
    with_ports: bool,
) -> NetworkList {
    let default_route = if config.pod_cidr.contains(':') {
        "::/0"
    } else {
        "0.0.0.0/0"
    };
    let mut bridge = json!({
        "type": "bridge",
        "bridge": config.bridge,
        "isGateway": true,
        "ipMasq": true,
        "hairpinMode": true,
        "ipam": {
            "type": "host-local",
            "ranges": [[{ "subnet": config.pod_cidr }]],
            // Without a default route a pod reaches only its own subnet.
            "routes": [{ "dst": default_route }],
            // Leases live in our data dir so they are ours alone to list and remove.
            "dataDir": ipam_dir,
        },
    });
    if let (Some(mtu), Some(obj)) = (config.mtu, bridge.as_object_mut()) {
        obj.insert("mtu".into(), json!(mtu));
    }
    let mut plugins = vec![bridge];
    if with_ports {
        plugins.push(json!({
            "type": "portmap",
            "capabilities": { "portMappings": true },
            // Masquerade hairpin and localhost traffic so replies come back through the host.
            "snat": true,
        }));
    }
    NetworkList {
        cni_version: CNI_VERSION.into(),
        name: NETWORK_NAME.into(),
        plugins,
    }
}

/// The loopback network: brings `lo` up inside the namespace.
pub(super) fn loopback_network() -> NetworkList {
    NetworkList {
        cni_version: CNI_VERSION.into(),
        name: LOOPBACK_NETWORK_NAME.into(),
        plugins: vec![json!({ "type": "loopback" })],
    }
}

/// The stdin one plugin of a list gets (libcni's `buildOneConfig`): its own configuration
/// plus the list's name and version, the previous result, and the runtime values for the
/// capabilities it declares.
pub(super) fn plugin_stdin(
    list: &NetworkList,
    plugin: &Value,
    prev_result: Option<&Value>,
    rt: &Runtime<'_>,
) -> Value {
    let mut conf = plugin.as_object().cloned().unwrap_or_default();
    conf.insert("cniVersion".into(), json!(list.cni_version));
    conf.insert("name".into(), json!(list.name));
    if let Some(prev) = prev_result {
        conf.insert("prevResult".into(), prev.clone());
    }
    let wants_ports = plugin
        .pointer("/capabilities/portMappings")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if wants_ports && !rt.port_mappings.is_empty() {
        let mappings: Vec<Value> = rt.port_mappings.iter().map(port_mapping_json).collect();
        conf.insert("runtimeConfig".into(), json!({ "portMappings": mappings }));
    }
    Value::Object(conf)
}

/// One entry of `runtimeConfig.portMappings` (CNI CONVENTIONS.md).
fn port_mapping_json(pm: &PortMapping) -> Value {
    let mut v = json!({
        "hostPort": pm.host_port,
        "containerPort": pm.container_port,
        "protocol": pm.protocol,
    });
    if let (Some(ip), Some(obj)) = (&pm.host_ip, v.as_object_mut()) {
        obj.insert("hostIP".into(), json!(ip));
    }
    v
}

/// The plugin type (binary name) of a plugin configuration.
pub(super) fn plugin_type(plugin: &Value) -> &str {
    plugin.get("type").and_then(Value::as_str).unwrap_or("")
}

/// One plugin execution.
#[derive(Debug)]
pub(super) struct Invocation<'a> {
    pub plugin: &'a str,
    pub command: Command,
    pub rt: &'a Runtime<'a>,
    pub stdin: Value,
}

/// Runs one plugin and returns what it printed on success (`None` for empty output, as
/// DEL usually gives).
pub(super) trait Runner: Send + Sync {
    async fn exec(&self, inv: &Invocation<'_>) -> Result<Option<Value>, NetworkError>;
}

/// ADD a whole list: every plugin in order, each given the previous one's result. Returns
/// the last result (the network's result, to be cached for DEL).
pub(super) async fn add_list<R: Runner>(
    runner: &R,
    list: &NetworkList,
    rt: &Runtime<'_>,
) -> Result<Value, NetworkError> {
    let mut prev: Option<Value> = None;
    for plugin in &list.plugins {
        let inv = Invocation {
            plugin: plugin_type(plugin),
            command: Command::Add,
            rt,
            stdin: plugin_stdin(list, plugin, prev.as_ref(), rt),
        };
        let result = runner
            .exec(&inv)
            .await?
            .ok_or_else(|| NetworkError::BadResult {
                plugin: inv.plugin.to_string(),
                pod_uid: rt.container_id.to_string(),
                reason: "ADD printed no result".into(),
            })?;
        prev = Some(result);
    }
    prev.ok_or_else(|| NetworkError::BadResult {
        plugin: list.name.clone(),
        pod_uid: rt.container_id.to_string(),
        reason: "the network has no plugins".into(),
    })
}

/// DEL a whole list: the plugins in reverse order, each given the cached result of the
/// list's ADD (libcni's `DelNetworkList`), or none when ADD never finished.
pub(super) async fn del_list<R: Runner>(
    runner: &R,
    list: &NetworkList,
    cached: Option<&Value>,
    rt: &Runtime<'_>,
) -> Result<(), NetworkError> {
    for plugin in list.plugins.iter().rev() {
        let inv = Invocation {
            plugin: plugin_type(plugin),
            command: Command::Del,
            rt,
            stdin: plugin_stdin(list, plugin, cached, rt),
        };
        runner.exec(&inv).await?;
    }
    Ok(())
}

/// The addresses a result gives the pod on `ifname`: the `ips` entries whose `interface`
/// index names that interface inside the sandbox (entries without an index count too, as
/// older results omit it).
pub(super) fn pod_ips(result: &Value, ifname: &str) -> Vec<IpAddr> {
    let interfaces = result.get("interfaces").and_then(Value::as_array);
    let on_pod_iface = |ip: &Value| -> bool {
        let Some(idx) = ip.get("interface").and_then(Value::as_u64) else {
            return true;
        };
        let iface = usize::try_from(idx)
            .ok()
            .and_then(|i| interfaces.and_then(|ifs| ifs.get(i)));
        iface.is_some_and(|iface| {
            iface.get("name").and_then(Value::as_str) == Some(ifname)
                && iface
                    .get("sandbox")
                    .and_then(Value::as_str)
                    .is_some_and(|s| !s.is_empty())
        })
    };
    result
        .get("ips")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|ip| on_pod_iface(ip))
        .filter_map(|ip| ip.get("address").and_then(Value::as_str))
        .filter_map(|cidr| cidr.split('/').next()?.parse().ok())
        .collect()
}

/// Reads a failing plugin's stdout as the spec's error object, if it is one.
pub(super) fn parse_error(stdout: &[u8]) -> Option<CniError> {
    let v: Value = serde_json::from_slice(stdout).ok()?;
    // An object without code and msg is not an error object (a stray result, say).
    if v.get("code").is_none() && v.get("msg").is_none() {
        return None;
    }
    serde_json::from_value(v).ok()
}

/// The first of `dirs` holding an executable `plugin`.
pub(super) fn find_plugin(dirs: &[PathBuf], plugin: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    dirs.iter().map(|d| d.join(plugin)).find(|p| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// Runs the real plugin binaries.
#[derive(Clone, Debug)]
pub(super) struct ExecRunner {
    pub bin_dirs: Vec<PathBuf>,
}

impl Runner for ExecRunner {
    async fn exec(&self, inv: &Invocation<'_>) -> Result<Option<Value>, NetworkError> {
        let plugin = inv.plugin.to_string();
        let command = inv.command.as_str();
        let pod_uid = inv.rt.container_id.to_string();
        let path = find_plugin(&self.bin_dirs, inv.plugin).ok_or_else(|| {
            NetworkError::PluginsMissing {
                plugins: vec![plugin.clone()],
                searched: self.bin_dirs.clone(),
            }
        })?;
        let cni_path =
            std::env::join_paths(&self.bin_dirs).map_err(|e| NetworkError::InvalidConfig {
                reason: format!("CNI plugin directories cannot form CNI_PATH: {e}"),
            })?;
        let stdin = serde_json::to_vec(&inv.stdin).map_err(|e| NetworkError::InvalidConfig {
            reason: format!("network configuration for {plugin} does not serialize: {e}"),
        })?;

        // The rest of our environment is kept on purpose: the plugins run iptables, found
        // through PATH.
        let mut cmd = tokio::process::Command::new(&path);
        cmd.env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", inv.rt.container_id)
            .env("CNI_IFNAME", inv.rt.ifname)
            .env("CNI_ARGS", inv.rt.args)
            .env("CNI_PATH", cni_path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        match inv.rt.netns {
            Some(netns) => cmd.env("CNI_NETNS", netns),
            None => cmd.env_remove("CNI_NETNS"),
        };

        let started = Instant::now();
        let exec_err = |source| NetworkError::Exec {
            plugin: plugin.clone(),
            command,
            pod_uid: pod_uid.clone(),
            source,
        };
        let mut child = cmd.spawn().map_err(exec_err)?;
        let run = async {
            if let Some(mut input) = child.stdin.take() {
                // A plugin that exits without reading its config (a usage error, say) closes
                // the pipe; its exit status and output tell more than our EPIPE would.
                match input.write_all(&stdin).await {
                    Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => return Err(e),
                    _ => {}
                }
                // Dropping stdin closes it: the plugin reads to EOF.
            }
            child.wait_with_output().await
        };
        let output = tokio::time::timeout(PLUGIN_TIMEOUT, run)
            .await
            .map_err(|_| NetworkError::Timeout {
                plugin: plugin.clone(),
                command,
                pod_uid: pod_uid.clone(),
                timeout: PLUGIN_TIMEOUT,
            })?
            .map_err(exec_err)?;
        tracing::debug!(
            plugin = %plugin, command, pod_uid = %pod_uid,
            elapsed_ms = started.elapsed().as_millis() as u64,
            success = output.status.success(),
            "CNI plugin ran"
        );

        if !output.status.success() {
            return Err(NetworkError::Plugin {
                plugin,
                command,
                pod_uid,
                error: parse_error(&output.stdout).map(Box::new),
                status: output.status.to_string(),
                output: tail(&output.stdout, &output.stderr),
            });
        }
        if output.stdout.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        serde_json::from_slice(&output.stdout)
            .map(Some)
            .map_err(|e| NetworkError::BadResult {
                plugin,
                pod_uid,
                reason: format!("not JSON: {e}"),
            })
    }
}

/// What a failing plugin printed, shortened, for the error message when it printed no
/// error object.
fn tail(stdout: &[u8], stderr: &[u8]) -> String {
    const MAX: usize = 2000;
    let mut s = String::from_utf8_lossy(stdout).trim().to_string();
    let err = String::from_utf8_lossy(stderr);
    if !err.trim().is_empty() {
        if !s.is_empty() {
            s.push_str(" / ");
        }
        s.push_str(err.trim());
    }
    if s.len() > MAX {
        let cut = (0..=MAX)
            .rev()
            .find(|&i| s.is_char_boundary(i))
            .unwrap_or(0);
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn config() -> NetworkConfig {
        NetworkConfig::new("10.42.0.0/24", "data")
    }

    fn rt<'a>(ports: &'a [PortMapping]) -> Runtime<'a> {
        Runtime {
            container_id: "uid-1",
            netns: Some(Path::new("/x/netns/uid-1")),
            ifname: POD_IFNAME,
            args: "IgnoreUnknown=1",
            port_mappings: ports,
        }
    }

    fn http_port() -> Vec<PortMapping> {
        vec![PortMapping {
            host_port: 8080,
            container_port: 80,
            protocol: "tcp".into(),
            host_ip: None,
        }]
    }

    #[test]
    fn bridge_network_has_gateway_masquerade_default_route_and_our_ipam_dir() {
        let mut cfg = config();
        cfg.mtu = Some(1400);
        let list = bridge_network(&cfg, Path::new("/d/ipam"), false);
        assert_eq!(list.name, "moor");
        assert_eq!(list.cni_version, "1.0.0");
        assert_eq!(list.plugins.len(), 1, "no portmap without ports");
        let b = &list.plugins[0];
        assert_eq!(b["type"], "bridge");
        assert_eq!(b["bridge"], "moor0");
        assert_eq!(b["isGateway"], true);
        assert_eq!(b["ipMasq"], true);
        assert_eq!(b["hairpinMode"], true);
        assert_eq!(b["mtu"], 1400);
        assert_eq!(b["ipam"]["type"], "host-local");
        assert_eq!(b["ipam"]["ranges"][0][0]["subnet"], "10.42.0.0/24");
        assert_eq!(b["ipam"]["routes"][0]["dst"], "0.0.0.0/0");
        assert_eq!(b["ipam"]["dataDir"], "/d/ipam");

        let with_ports = bridge_network(&config(), Path::new("/d/ipam"), true);
        assert_eq!(with_ports.plugins.len(), 2);
        assert_eq!(with_ports.plugins[1]["type"], "portmap");
        assert_eq!(with_ports.plugins[1]["capabilities"]["portMappings"], true);
        assert!(with_ports.plugins[0].get("mtu").is_none());
    }

    #[test]
    fn ipv6_pod_cidr_gets_an_ipv6_default_route() {
        let mut cfg = config();
        cfg.pod_cidr = "fd00:42::/64".into();
        let list = bridge_network(&cfg, Path::new("/d"), false);
        assert_eq!(list.plugins[0]["ipam"]["routes"][0]["dst"], "::/0");
    }

    #[test]
    fn plugin_stdin_injects_name_version_prev_result_and_declared_capabilities_only() {
        let ports = http_port();
        let list = bridge_network(&config(), Path::new("/d"), true);
        let prev = json!({"cniVersion": "1.0.0", "ips": []});

        let bridge = plugin_stdin(&list, &list.plugins[0], None, &rt(&ports));
        assert_eq!(bridge["name"], "moor");
        assert_eq!(bridge["cniVersion"], "1.0.0");
        assert!(bridge.get("prevResult").is_none());
        assert!(
            bridge.get("runtimeConfig").is_none(),
            "bridge declares no portMappings capability"
        );

        let portmap = plugin_stdin(&list, &list.plugins[1], Some(&prev), &rt(&ports));
        assert_eq!(portmap["prevResult"], prev);
        assert_eq!(
            portmap["runtimeConfig"]["portMappings"],
            json!([{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}])
        );

        let mut with_ip = http_port();
        with_ip[0].host_ip = Some("10.0.0.5".into());
        let portmap = plugin_stdin(&list, &list.plugins[1], Some(&prev), &rt(&with_ip));
        assert_eq!(
            portmap["runtimeConfig"]["portMappings"][0]["hostIP"],
            "10.0.0.5"
        );
    }

    const BRIDGE_RESULT: &str = r#"{
        "cniVersion": "1.0.0",
        "interfaces": [
            {"name": "moor0", "mac": "d2:e1:84:07:0e:37"},
            {"name": "veth0d820654", "mac": "fa:40:a1:d7:85:4f"},
            {"name": "eth0", "mac": "9a:c2:d0:56:09:b2", "sandbox": "/x/netns/uid-1"}
        ],
        "ips": [
            {"interface": 2, "address": "10.42.0.7/24", "gateway": "10.42.0.1"},
            {"interface": 0, "address": "10.42.0.1/24"},
            {"interface": 2, "address": "fd00:42::7/64", "gateway": "fd00:42::1"}
        ],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dns": {}
    }"#;

    #[test]
    fn pod_ips_are_the_sandbox_interface_addresses() {
        let result: Value = serde_json::from_str(BRIDGE_RESULT).unwrap();
        let ips = pod_ips(&result, "eth0");
        assert_eq!(
            ips,
            vec![
                "10.42.0.7".parse::<IpAddr>().unwrap(),
                "fd00:42::7".parse().unwrap()
            ]
        );
        assert!(pod_ips(&result, "eth1").is_empty());
    }

    #[test]
    fn pod_ips_accept_results_without_interface_indexes_and_skip_garbage() {
        let result = json!({"ips": [{"address": "10.1.2.3/16"}, {"address": "nonsense"}, {"gateway": "1.2.3.4"}]});
        assert_eq!(
            pod_ips(&result, "eth0"),
            vec!["10.1.2.3".parse::<IpAddr>().unwrap()]
        );
        assert!(pod_ips(&json!({}), "eth0").is_empty());
        assert!(
            pod_ips(
                &json!({"ips": [{"interface": 99, "address": "10.0.0.1/8"}]}),
                "eth0"
            )
            .is_empty()
        );
        assert!(pod_ips(&json!("a string"), "eth0").is_empty());
    }

    #[test]
    fn parse_error_reads_the_spec_error_object() {
        let out = br#"{"cniVersion":"1.0.0","code":11,"msg":"no IP addresses available","details":"range 10.0.0.0/30"}"#;
        let err = parse_error(out).unwrap();
        assert_eq!(err.code, 11);
        assert_eq!(err.msg, "no IP addresses available");
        assert_eq!(
            err.to_string(),
            "code 11: no IP addresses available (range 10.0.0.0/30)"
        );
        assert_eq!(parse_error(b"panic: runtime error"), None);
        assert_eq!(parse_error(br#"{"cniVersion":"1.0.0","ips":[]}"#), None);
        assert_eq!(parse_error(br#"{"code":"eleven"}"#), None);
    }

    #[test]
    fn tail_keeps_both_streams_and_cuts_long_output_on_a_char_boundary() {
        assert_eq!(tail(b" out \n", b"err\n"), "out / err");
        assert_eq!(tail(b"", b"err"), "err");
        let long = "é".repeat(3000);
        let t = tail(long.as_bytes(), b"");
        assert!(t.ends_with("...") && t.len() <= 2003);
    }

    /// Records invocations and answers ADD with a result naming the plugin.
    #[derive(Default)]
    struct FakeRunner {
        calls: Mutex<Vec<(String, Command, Value)>>,
        fail: Option<&'static str>,
    }

    impl Runner for FakeRunner {
        async fn exec(&self, inv: &Invocation<'_>) -> Result<Option<Value>, NetworkError> {
            self.calls.lock().unwrap().push((
                inv.plugin.to_string(),
                inv.command,
                inv.stdin.clone(),
            ));
            if self.fail == Some(inv.plugin) {
                return Err(NetworkError::Plugin {
                    plugin: inv.plugin.into(),
                    command: inv.command.as_str(),
                    pod_uid: inv.rt.container_id.into(),
                    error: Some(Box::new(CniError {
                        code: 7,
                        msg: "boom".into(),
                        details: String::new(),
                    })),
                    status: "exit status: 1".into(),
                    output: String::new(),
                });
            }
            Ok(match inv.command {
                Command::Add => Some(json!({ "from": inv.plugin })),
                Command::Del => None,
            })
        }
    }

    #[tokio::test]
    async fn add_feeds_each_plugin_the_previous_result_and_returns_the_last() {
        let ports = http_port();
        let list = bridge_network(&config(), Path::new("/d"), true);
        let runner = FakeRunner::default();
        let result = add_list(&runner, &list, &rt(&ports)).await.unwrap();
        assert_eq!(result, json!({"from": "portmap"}));
        let calls = runner.calls.lock().unwrap();
        assert_eq!(calls.len(), 2);
        assert_eq!((calls[0].0.as_str(), calls[0].1), ("bridge", Command::Add));
        assert!(calls[0].2.get("prevResult").is_none());
        assert_eq!((calls[1].0.as_str(), calls[1].1), ("portmap", Command::Add));
        assert_eq!(calls[1].2["prevResult"], json!({"from": "bridge"}));
    }

    #[tokio::test]
    async fn del_runs_in_reverse_with_the_cached_result_for_every_plugin() {
        let ports = http_port();
        let list = bridge_network(&config(), Path::new("/d"), true);
        let runner = FakeRunner::default();
        let cached = json!({"cached": true});
        del_list(&runner, &list, Some(&cached), &rt(&ports))
            .await
            .unwrap();
        let calls = runner.calls.lock().unwrap();
        let order: Vec<_> = calls.iter().map(|c| (c.0.as_str(), c.1)).collect();
        assert_eq!(
            order,
            vec![("portmap", Command::Del), ("bridge", Command::Del)]
        );
        assert!(calls.iter().all(|c| c.2["prevResult"] == cached));
        assert_eq!(
            calls[0].2["runtimeConfig"]["portMappings"][0]["hostPort"],
            8080
        );
    }

    #[tokio::test]
    async fn a_failing_plugin_stops_the_chain_and_is_named() {
        let list = bridge_network(&config(), Path::new("/d"), true);
        let runner = FakeRunner {
            fail: Some("bridge"),
            ..Default::default()
        };
        let err = add_list(&runner, &list, &rt(&http_port()))
            .await
            .unwrap_err();
        assert_eq!(
            runner.calls.lock().unwrap().len(),
            1,
            "portmap must not run after bridge failed"
        );
        let msg = err.to_string();
        assert!(
            msg.contains("bridge") && msg.contains("ADD") && msg.contains("boom"),
            "{msg}"
        );
    }

    #[test]
    fn find_plugin_wants_an_executable_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let dirs = vec![dir.path().join("missing"), dir.path().to_path_buf()];
        assert_eq!(find_plugin(&dirs, "bridge"), None);
        let p = dir.path().join("bridge");
        std::fs::write(&p, "#!/bin/sh\n").unwrap();
        assert_eq!(find_plugin(&dirs, "bridge"), None, "not executable");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(find_plugin(&dirs, "bridge"), Some(p));
    }
}
