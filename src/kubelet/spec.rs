//! The OCI runtime spec of one container: what runc is told to run, built with oci-spec
//! from the image's config and the pod's container spec — argv (Kubernetes' command/args
//! over the image's Entrypoint/Cmd, with `$(VAR)` expansion), environment, working dir,
//! user, security context (capabilities, privileged, read-only root, no-new-privileges),
//! cgroup limits from resources, namespaces (the pod's network namespace or the host's) and
//! mounts. Pure: everything it needs is handed in, nothing is read from the host, so every
//! rule is unit-tested here.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use k8s_openapi::api::core::v1::{Container, Pod, SecurityContext};
use oci_spec::image::ImageConfiguration;
use oci_spec::runtime::{
    Capability, LinuxCapabilities, LinuxCpu, LinuxDeviceCgroup, LinuxMemory, LinuxNamespace,
    LinuxNamespaceType, LinuxResources, Mount, Spec,
};

use crate::api::validation::parse_quantity;

/// Why a container's spec could not be made: shown as the container's waiting message
/// (reason CreateContainerError / CreateContainerConfigError).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    #[error(
        "no command specified: the container sets no command and the image has no Entrypoint or Cmd"
    )]
    NoCommand,
    #[error(
        "image user {0:?} is not numeric and moor does not read the image's /etc/passwd; set securityContext.runAsUser"
    )]
    UserName(String),
    #[error("unknown capability {0:?}")]
    Capability(String),
    #[error("{field}: {message}")]
    Resource { field: String, message: String },
}

/// The default capabilities of a container (containerd's CRI set, which Kubernetes users
/// know): enough to run ordinary services as root, nothing that administers the host.
pub const DEFAULT_CAPABILITIES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
];

/// Everything a container's spec is made of, resolved by the caller.
pub struct SpecInput<'a> {
    pub pod: &'a Pod,
    pub container: &'a Container,
    pub image: &'a ImageConfiguration,
    /// The container's own variables, in order, values already resolved (configMap, secret,
    /// fieldRef lookups done; `$(VAR)` references not yet expanded).
    pub env: Vec<(String, String)>,
    /// Bind mounts of volumes and of the pod's /etc/hosts, /etc/hostname, /etc/resolv.conf.
    pub mounts: Vec<Mount>,
    /// The pod's network namespace; None runs in the host's (hostNetwork).
    pub netns: Option<PathBuf>,
    /// Relative to each cgroup controller's root, e.g. `/moor/pod<uid>/<container id>`.
    pub cgroups_path: String,
}

/// Builds the spec.
pub fn runtime_spec(input: &SpecInput<'_>) -> Result<Spec, SpecError> {
    let container = input.container;
    let pod_spec = input.pod.spec.as_ref();
    let image = input.image.config().as_ref();
    let security = container.security_context.as_ref();
    let pod_security = pod_spec.and_then(|s| s.security_context.as_ref());
    let privileged = security.and_then(|s| s.privileged).unwrap_or(false);
    let host_network = pod_spec.and_then(|s| s.host_network).unwrap_or(false);

    let env = environment(
        image
            .and_then(|c| c.env().as_ref())
            .map(Vec::as_slice)
            .unwrap_or(&[]),
        &input.env,
    );
    let vars: BTreeMap<&str, &str> = env.iter().filter_map(|kv| kv.split_once('=')).collect();
    let args = command_line(
        container.command.as_deref(),
        container.args.as_deref(),
        image.and_then(|c| c.entrypoint().as_deref()),
        image.and_then(|c| c.cmd().as_deref()),
        &vars,
    )?;

    let mut spec = Spec::default();
    let mut process = spec.process().clone().unwrap_or_default();
    process.set_args(Some(args));
    process.set_env(Some(env));
    let cwd = container
        .working_dir
        .clone()
        .filter(|d| !d.is_empty())
        .or_else(|| image.and_then(|c| c.working_dir().clone()))
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| "/".to_owned());
    process.set_cwd(PathBuf::from(cwd));
    // Containers inherit containerd's limits (as under containerd's CRI) instead of runc's
    // 1024 open files, which servers outgrow.
    process.set_rlimits(None);

    let (uid, gid) = user(
        security,
        pod_security,
        image.and_then(|c| c.user().as_deref()),
    )?;
    let user = process.user_mut();
    user.set_uid(uid);
    user.set_gid(gid);
    let mut groups: Vec<u32> = pod_security
        .and_then(|s| s.supplemental_groups.as_ref())
        .map(|g| g.iter().filter_map(|g| u32::try_from(*g).ok()).collect())
        .unwrap_or_default();
    if let Some(fs_group) = pod_security
        .and_then(|s| s.fs_group)
        .and_then(|g| u32::try_from(g).ok())
    {
        groups.push(fs_group);
    }
    if !groups.is_empty() {
        user.set_additional_gids(Some(groups));
    }

    let caps = capabilities(security, privileged)?;
    process.set_capabilities(Some(
        LinuxCapabilities::default()
            .set_bounding(Some(caps.clone()))
            .set_effective(Some(caps.clone()))
            .set_permitted(Some(caps))
            .set_inheritable(None)
            .set_ambient(None)
            .clone(),
    ));
    // Kubernetes' default allows privilege escalation (setuid binaries work); only an
    // explicit `allowPrivilegeEscalation: false` turns it off.
    let no_new_privileges = !privileged
        && security
            .and_then(|s| s.allow_privilege_escalation)
            .is_some_and(|allow| !allow);
    process.set_no_new_privileges(Some(no_new_privileges));
    spec.set_process(Some(process));

    let mut root = spec.root().clone().unwrap_or_default();
    root.set_path(PathBuf::from("rootfs"));
    root.set_readonly(Some(
        security
            .and_then(|s| s.read_only_root_filesystem)
            .unwrap_or(false),
    ));
    spec.set_root(Some(root));

    let hostname = if host_network {
        None
    } else {
        Some(pod_hostname(input.pod))
    };
    spec.set_hostname(hostname);

    let mut mounts = spec.mounts().clone().unwrap_or_default();
    mounts.push(cgroup_mount(privileged));
    mounts.extend(input.mounts.iter().cloned());
    spec.set_mounts(Some(mounts));

    let mut linux = spec.linux().clone().unwrap_or_default();
    let namespaces: Vec<LinuxNamespace> = oci_spec::runtime::get_default_namespaces()
        .into_iter()
        .filter_map(|mut ns| match ns.typ() {
            LinuxNamespaceType::Network => {
                let path = input.netns.clone()?;
                ns.set_path(Some(path));
                Some(ns)
            }
            // A pod on the host network keeps the host's hostname, as upstream.
            LinuxNamespaceType::Uts if host_network => None,
            _ => Some(ns),
        })
        .collect();
    linux.set_namespaces(Some(namespaces));
    linux.set_cgroups_path(Some(PathBuf::from(&input.cgroups_path)));
    let mut resources = linux.resources().clone().unwrap_or_default();
    limits(container, &mut resources)?;
    if privileged {
        resources.set_devices(Some(vec![
            LinuxDeviceCgroup::default()
                .set_allow(true)
                .set_access(Some("rwm".to_owned()))
                .clone(),
        ]));
        linux.set_masked_paths(None);
        linux.set_readonly_paths(None);
    }
    linux.set_resources(Some(resources));
    spec.set_linux(Some(linux));
    Ok(spec)
}

/// The pod's hostname: spec.hostname, else its name (truncated to 63 bytes as upstream).
pub fn pod_hostname(pod: &Pod) -> String {
    let name = pod
        .spec
        .as_ref()
        .and_then(|s| s.hostname.clone())
        .filter(|h| !h.is_empty())
        .or_else(|| pod.metadata.name.clone())
        .unwrap_or_default();
    let mut name = name;
    name.truncate(63);
    name.trim_end_matches(['-', '.']).to_owned()
}

/// The image's variables, then the container's (a container variable replaces an image
/// variable of the same name, in place; `$(VAR)` in a value expands to a variable defined
/// before it, as kubelet does).
fn environment(image_env: &[String], container_env: &[(String, String)]) -> Vec<String> {
    let mut out: Vec<(String, String)> = image_env
        .iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => (kv.clone(), String::new()),
        })
        .collect();
    let mut defined: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in container_env {
        let value = expand(value, &|var| defined.get(var).cloned());
        defined.insert(name.clone(), value.clone());
        match out.iter_mut().find(|(k, _)| k == name) {
            Some(slot) => slot.1 = value,
            None => out.push((name.clone(), value)),
        }
    }
    out.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// Kubernetes' rules: `command` replaces the image's Entrypoint (and drops its Cmd); `args`
/// replaces the Cmd. `$(VAR)` in either expands from the container's environment.
fn command_line(
    command: Option<&[String]>,
    args: Option<&[String]>,
    entrypoint: Option<&[String]>,
    cmd: Option<&[String]>,
    vars: &BTreeMap<&str, &str>,
) -> Result<Vec<String>, SpecError> {
    let lookup = |var: &str| vars.get(var).map(|v| (*v).to_owned());
    let expand_all =
        |list: &[String]| -> Vec<String> { list.iter().map(|s| expand(s, &lookup)).collect() };
    let argv: Vec<String> = match (command.filter(|c| !c.is_empty()), args) {
        (Some(command), args) => {
            let mut argv = expand_all(command);
            argv.extend(expand_all(args.unwrap_or(&[])));
            argv
        }
        (None, Some(args)) if !args.is_empty() => {
            let mut argv = entrypoint.map(<[String]>::to_vec).unwrap_or_default();
            argv.extend(expand_all(args));
            argv
        }
        (None, _) => {
            let mut argv = entrypoint.map(<[String]>::to_vec).unwrap_or_default();
            argv.extend(cmd.map(<[String]>::to_vec).unwrap_or_default());
            argv
        }
    };
    if argv.is_empty() {
        return Err(SpecError::NoCommand);
    }
    Ok(argv)
}

/// Upstream's expansion (`third_party/forked/golang/expansion`): `$(NAME)` becomes the
/// variable's value when it is defined and stays as written otherwise; `$$` is a literal
/// `$`; any other `$` is kept.
pub fn expand(input: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(body) = after.strip_prefix('(') {
            match body.find(')') {
                Some(end) => {
                    let name = &body[..end];
                    match lookup(name) {
                        Some(value) => out.push_str(&value),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &body[end + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = body;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// uid and gid: runAsUser/runAsGroup of the container, else of the pod, else the image's
/// `User` (numeric `uid[:gid]`, or `root`).
fn user(
    container: Option<&SecurityContext>,
    pod: Option<&k8s_openapi::api::core::v1::PodSecurityContext>,
    image_user: Option<&str>,
) -> Result<(u32, u32), SpecError> {
    let run_as_user = container
        .and_then(|s| s.run_as_user)
        .or_else(|| pod.and_then(|s| s.run_as_user));
    let run_as_group = container
        .and_then(|s| s.run_as_group)
        .or_else(|| pod.and_then(|s| s.run_as_group));
    let (mut uid, mut gid) = (0u32, 0u32);
    if run_as_user.is_none()
        && let Some(spec) = image_user.filter(|u| !u.is_empty())
    {
        let (u, g) = match spec.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (spec, None),
        };
        uid = numeric_id(u).ok_or_else(|| SpecError::UserName(spec.to_owned()))?;
        if let Some(g) = g {
            gid = numeric_id(g).ok_or_else(|| SpecError::UserName(spec.to_owned()))?;
        }
    }
    if let Some(u) = run_as_user {
        uid = u32::try_from(u).map_err(|_| SpecError::Resource {
            field: "securityContext.runAsUser".into(),
            message: format!("{u} is not a valid uid"),
        })?;
    }
    if let Some(g) = run_as_group {
        gid = u32::try_from(g).map_err(|_| SpecError::Resource {
            field: "securityContext.runAsGroup".into(),
            message: format!("{g} is not a valid gid"),
        })?;
    }
    Ok((uid, gid))
}

fn numeric_id(s: &str) -> Option<u32> {
    if s == "root" {
        return Some(0);
    }
    s.parse().ok()
}

/// The default set with securityContext.capabilities applied (drop first, then add, as
/// containerd's CRI does; `ALL` in either means every capability); every capability for a
/// privileged container.
fn capabilities(
    security: Option<&SecurityContext>,
    privileged: bool,
) -> Result<HashSet<Capability>, SpecError> {
    let all = || -> HashSet<Capability> { all_capabilities() };
    if privileged {
        return Ok(all());
    }
    let mut caps: HashSet<Capability> = DEFAULT_CAPABILITIES
        .iter()
        .map(|c| capability(c))
        .collect::<Result<_, _>>()?;
    let Some(wanted) = security.and_then(|s| s.capabilities.as_ref()) else {
        return Ok(caps);
    };
    for drop in wanted.drop.iter().flatten() {
        if drop.eq_ignore_ascii_case("ALL") {
            caps.clear();
        } else {
            caps.remove(&capability(drop)?);
        }
    }
    for add in wanted.add.iter().flatten() {
        if add.eq_ignore_ascii_case("ALL") {
            caps = all();
        } else {
            caps.insert(capability(add)?);
        }
    }
    Ok(caps)
}

/// `NET_ADMIN` or `CAP_NET_ADMIN` (any case) → the capability.
fn capability(name: &str) -> Result<Capability, SpecError> {
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    serde_json::from_value(serde_json::Value::String(full))
        .map_err(|_| SpecError::Capability(name.to_owned()))
}

fn all_capabilities() -> HashSet<Capability> {
    // Capability numbers 0..=40 are the kernel's list; each known name parses.
    const NAMES: &[&str] = &[
        "CHOWN",
        "DAC_OVERRIDE",
        "DAC_READ_SEARCH",
        "FOWNER",
        "FSETID",
        "KILL",
        "SETGID",
        "SETUID",
        "SETPCAP",
        "LINUX_IMMUTABLE",
        "NET_BIND_SERVICE",
        "NET_BROADCAST",
        "NET_ADMIN",
        "NET_RAW",
        "IPC_LOCK",
        "IPC_OWNER",
        "SYS_MODULE",
        "SYS_RAWIO",
        "SYS_CHROOT",
        "SYS_PTRACE",
        "SYS_PACCT",
        "SYS_ADMIN",
        "SYS_BOOT",
        "SYS_NICE",
        "SYS_RESOURCE",
        "SYS_TIME",
        "SYS_TTY_CONFIG",
        "MKNOD",
        "LEASE",
        "AUDIT_WRITE",
        "AUDIT_CONTROL",
        "SETFCAP",
        "MAC_OVERRIDE",
        "MAC_ADMIN",
        "SYSLOG",
        "WAKE_ALARM",
        "BLOCK_SUSPEND",
        "AUDIT_READ",
        "PERFMON",
        "BPF",
        "CHECKPOINT_RESTORE",
    ];
    NAMES.iter().filter_map(|n| capability(n).ok()).collect()
}

/// The cgroup filesystem, read-only (writable for privileged containers), as containerd's
/// CRI mounts it.
fn cgroup_mount(privileged: bool) -> Mount {
    let mode = if privileged { "rw" } else { "ro" };
    let mut mount = Mount::default();
    mount
        .set_destination(PathBuf::from("/sys/fs/cgroup"))
        .set_typ(Some("cgroup".to_owned()))
        .set_source(Some(PathBuf::from("cgroup")))
        .set_options(Some(
            ["nosuid", "noexec", "nodev", "relatime", mode]
                .map(str::to_owned)
                .to_vec(),
        ));
    mount
}

/// CFS period used for cpu limits (upstream's default).
const CPU_PERIOD: u64 = 100_000;

/// resources.limits.cpu → CFS quota; requests.cpu → shares (1024 per core, at least 2);
/// limits.memory → memory limit. As kubelet's cgroupfs manager computes them.
fn limits(container: &Container, resources: &mut LinuxResources) -> Result<(), SpecError> {
    let Some(reqs) = container.resources.as_ref() else {
        return Ok(());
    };
    let milli = |list: Option<
        &BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
    >,
                 name: &str,
                 field: &str|
     -> Result<Option<i128>, SpecError> {
        let Some(q) = list.and_then(|l| l.get(name)) else {
            return Ok(None);
        };
        let parsed = parse_quantity(&q.0).map_err(|message| SpecError::Resource {
            field: format!("resources.{field}.{name}"),
            message,
        })?;
        Ok(Some(parsed.milli))
    };
    let cpu_limit = milli(reqs.limits.as_ref(), "cpu", "limits")?;
    let cpu_request = milli(reqs.requests.as_ref(), "cpu", "requests")?.or(cpu_limit);
    let memory_limit = milli(reqs.limits.as_ref(), "memory", "limits")?;
    let mut cpu = LinuxCpu::default();
    if let Some(request) = cpu_request {
        let shares = (request * 1024 / 1000).clamp(2, 262_144);
        cpu.set_shares(Some(shares as u64));
    }
    if let Some(limit) = cpu_limit {
        // At least 1 ms of every period, as upstream.
        let quota = (limit * CPU_PERIOD as i128 / 1000).max(1000);
        cpu.set_quota(Some(quota as i64));
        cpu.set_period(Some(CPU_PERIOD));
    }
    if cpu_request.is_some() || cpu_limit.is_some() {
        resources.set_cpu(Some(cpu));
    }
    if let Some(limit) = memory_limit {
        // Bytes, rounded up from milli-units.
        let bytes = (limit + 999) / 1000;
        resources.set_memory(Some(
            *LinuxMemory::default().set_limit(Some(i64::try_from(bytes).unwrap_or(i64::MAX))),
        ));
    }
    Ok(())
}

/// A bind mount of a host path.
pub fn bind_mount(source: PathBuf, destination: &str, read_only: bool) -> Mount {
    let mut mount = Mount::default();
    mount
        .set_destination(PathBuf::from(destination))
        .set_typ(Some("bind".to_owned()))
        .set_source(Some(source))
        .set_options(Some(vec![
            "rbind".to_owned(),
            "rprivate".to_owned(),
            if read_only { "ro" } else { "rw" }.to_owned(),
        ]));
    mount
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Capabilities, PodSpec, ResourceRequirements};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    fn image(json: serde_json::Value) -> ImageConfiguration {
        serde_json::from_value(serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": []},
            "config": json,
        }))
        .unwrap()
    }

    fn pod(spec: PodSpec) -> Pod {
        Pod {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some("web-1".into()),
                ..Default::default()
            },
            spec: Some(spec),
            status: None,
        }
    }

    fn build(
        pod: &Pod,
        container: &Container,
        image: &ImageConfiguration,
    ) -> Result<Spec, SpecError> {
        runtime_spec(&SpecInput {
            pod,
            container,
            image,
            env: container
                .env
                .iter()
                .flatten()
                .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
                .collect(),
            mounts: vec![],
            netns: Some(PathBuf::from("/run/netns/x")),
            cgroups_path: "/moor/podx/c".into(),
        })
    }

    fn container(command: Option<&[&str]>, args: Option<&[&str]>) -> Container {
        Container {
            name: "c".into(),
            command: command.map(|c| c.iter().map(|s| s.to_string()).collect()),
            args: args.map(|c| c.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        }
    }

    fn argv(spec: &Spec) -> Vec<String> {
        spec.process().as_ref().unwrap().args().clone().unwrap()
    }

    #[test]
    fn command_and_args_follow_kubernetes_rules() {
        let img = image(serde_json::json!({"Entrypoint": ["/entry"], "Cmd": ["cmd1", "cmd2"]}));
        let p = pod(PodSpec::default());
        type Case<'a> = (Option<&'a [&'a str]>, Option<&'a [&'a str]>, &'a [&'a str]);
        let cases: &[Case] = &[
            (None, None, &["/entry", "cmd1", "cmd2"]),
            (None, Some(&["a"]), &["/entry", "a"]),
            (Some(&["/bin/sh"]), None, &["/bin/sh"]),
            (
                Some(&["/bin/sh"]),
                Some(&["-c", "x"]),
                &["/bin/sh", "-c", "x"],
            ),
        ];
        for (command, args, want) in cases {
            let spec = build(&p, &container(*command, *args), &img).unwrap();
            assert_eq!(
                argv(&spec),
                want.iter().map(|s| s.to_string()).collect::<Vec<_>>()
            );
        }
        let empty = image(serde_json::json!({}));
        assert_eq!(
            build(&p, &container(None, None), &empty).unwrap_err(),
            SpecError::NoCommand
        );
    }

    #[test]
    fn variables_expand_in_args_and_env() {
        let lookup = |v: &str| (v == "A").then(|| "1".to_owned());
        assert_eq!(expand("x$(A)y", &lookup), "x1y");
        assert_eq!(expand("$(B)", &lookup), "$(B)");
        assert_eq!(expand("$$(A)", &lookup), "$(A)");
        assert_eq!(expand("$A $", &lookup), "$A $");
        assert_eq!(expand("$(A", &lookup), "$(A");

        let img = image(serde_json::json!({"Env": ["PATH=/bin", "A=img"], "Cmd": ["sh"]}));
        let mut c = container(Some(&["echo", "$(A)-$(B)"]), None);
        c.env = Some(vec![
            k8s_openapi::api::core::v1::EnvVar {
                name: "A".into(),
                value: Some("one".into()),
                ..Default::default()
            },
            k8s_openapi::api::core::v1::EnvVar {
                name: "B".into(),
                value: Some("$(A)two".into()),
                ..Default::default()
            },
        ]);
        let spec = build(&pod(PodSpec::default()), &c, &img).unwrap();
        assert_eq!(argv(&spec), vec!["echo", "one-onetwo"]);
        let env = spec.process().as_ref().unwrap().env().clone().unwrap();
        assert_eq!(env, vec!["PATH=/bin", "A=one", "B=onetwo"]);
    }

    #[test]
    fn user_from_security_context_or_image() {
        let img = image(serde_json::json!({"User": "1000:50", "Cmd": ["sh"]}));
        let p = pod(PodSpec::default());
        let spec = build(&p, &container(None, None), &img).unwrap();
        let user = spec.process().as_ref().unwrap().user().clone();
        assert_eq!((user.uid(), user.gid()), (1000, 50));

        let mut c = container(None, None);
        c.security_context = Some(SecurityContext {
            run_as_user: Some(7),
            run_as_group: Some(8),
            ..Default::default()
        });
        let spec = build(&p, &c, &img).unwrap();
        let user = spec.process().as_ref().unwrap().user().clone();
        assert_eq!((user.uid(), user.gid()), (7, 8));

        let named = image(serde_json::json!({"User": "nginx", "Cmd": ["sh"]}));
        assert!(matches!(
            build(&p, &container(None, None), &named),
            Err(SpecError::UserName(_))
        ));
    }

    #[test]
    fn capabilities_drop_then_add() {
        let sc = SecurityContext {
            capabilities: Some(Capabilities {
                add: Some(vec!["NET_ADMIN".into()]),
                drop: Some(vec!["ALL".into()]),
            }),
            ..Default::default()
        };
        let caps = capabilities(Some(&sc), false).unwrap();
        assert_eq!(caps, HashSet::from([Capability::NetAdmin]));
        let caps = capabilities(None, false).unwrap();
        assert_eq!(caps.len(), DEFAULT_CAPABILITIES.len());
        assert!(!caps.contains(&Capability::SysAdmin));
        assert!(
            capabilities(None, true)
                .unwrap()
                .contains(&Capability::SysAdmin)
        );
        let bad = SecurityContext {
            capabilities: Some(Capabilities {
                add: Some(vec!["FLY".into()]),
                drop: None,
            }),
            ..Default::default()
        };
        assert_eq!(
            capabilities(Some(&bad), false).unwrap_err(),
            SpecError::Capability("FLY".into())
        );
    }

    #[test]
    fn limits_become_cgroup_settings() {
        let mut c = container(Some(&["sh"]), None);
        c.resources = Some(ResourceRequirements {
            limits: Some(BTreeMap::from([
                ("cpu".to_owned(), Quantity("500m".into())),
                ("memory".to_owned(), Quantity("64Mi".into())),
            ])),
            requests: Some(BTreeMap::from([(
                "cpu".to_owned(),
                Quantity("250m".into()),
            )])),
            ..Default::default()
        });
        let spec = build(&pod(PodSpec::default()), &c, &image(serde_json::json!({}))).unwrap();
        let resources = spec.linux().as_ref().unwrap().resources().clone().unwrap();
        let cpu = resources.cpu().clone().unwrap();
        assert_eq!(cpu.quota(), Some(50_000));
        assert_eq!(cpu.period(), Some(100_000));
        assert_eq!(cpu.shares(), Some(256));
        assert_eq!(resources.memory().unwrap().limit(), Some(64 * 1024 * 1024));
    }

    #[test]
    fn namespaces_follow_host_network() {
        let c = container(Some(&["sh"]), None);
        let img = image(serde_json::json!({}));
        let spec = build(&pod(PodSpec::default()), &c, &img).unwrap();
        let ns = spec.linux().as_ref().unwrap().namespaces().clone().unwrap();
        let net = ns
            .iter()
            .find(|n| n.typ() == LinuxNamespaceType::Network)
            .unwrap();
        assert_eq!(
            net.path().as_deref(),
            Some(std::path::Path::new("/run/netns/x"))
        );
        assert_eq!(spec.hostname().as_deref(), Some("web-1"));

        let host = pod(PodSpec {
            host_network: Some(true),
            ..Default::default()
        });
        let spec = runtime_spec(&SpecInput {
            pod: &host,
            container: &c,
            image: &img,
            env: vec![],
            mounts: vec![],
            netns: None,
            cgroups_path: "/x".into(),
        })
        .unwrap();
        let ns = spec.linux().as_ref().unwrap().namespaces().clone().unwrap();
        assert!(
            ns.iter()
                .all(|n| n.typ() != LinuxNamespaceType::Network
                    && n.typ() != LinuxNamespaceType::Uts)
        );
        assert_eq!(spec.hostname(), &None);
    }
}
