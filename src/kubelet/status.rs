//! A pod's status as kubelet reports it, computed from the pod's spec and what the runtime
//! shows of its containers: phase (upstream's getPhase), the conditions
//! PodReadyToStartContainers, Initialized, ContainersReady, Ready and PodScheduled with
//! kubelet's reasons and messages, container statuses (state, lastState, restartCount,
//! ready, started, image, containerID), IPs, startTime and QoS class. Pure, so kubectl's
//! view of every case is unit-tested here; the pod sync owns when it is written.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, HostIP, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::runtime::{Record, State};

/// What the sync knows beyond the runtime's records.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    /// Per container name, the newest and the one before it (for lastState).
    pub records: HashMap<String, (Record, Option<Record>)>,
    /// Per container name, why it is not running now when that is not an exit
    /// (ContainerCreating, PodInitializing, ErrImagePull, CrashLoopBackOff, ...).
    pub waiting: HashMap<String, (String, String)>,
    /// Per container name, whether its readiness probe passes (absent: no probe → ready
    /// while running).
    pub probe_ready: HashMap<String, bool>,
    /// Per container name, whether its startup probe has passed (absent: no probe).
    pub started: HashMap<String, bool>,
    /// The pod's network is up (its namespace exists, CNI ran), or it uses the host's.
    pub network_ready: bool,
    pub pod_ips: Vec<IpAddr>,
    pub host_ip: Option<IpAddr>,
    /// The pod is being stopped for good (deleted, or finished): nothing restarts.
    pub terminating: bool,
}

/// Computes the whole status; `previous` supplies startTime, PodScheduled and the
/// lastTransitionTime of conditions whose status did not change.
pub fn pod_status(pod: &Pod, observed: &Observed, now: Timestamp) -> PodStatus {
    let spec = pod.spec.clone().unwrap_or_default();
    let previous = pod.status.clone().unwrap_or_default();
    let restart_policy = spec.restart_policy.as_deref().unwrap_or("Always");

    let init_statuses: Vec<ContainerStatus> = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| container_status(c, observed, true))
        .collect();
    let statuses: Vec<ContainerStatus> = spec
        .containers
        .iter()
        .map(|c| container_status(c, observed, false))
        .collect();

    let init_done = |s: &ContainerStatus| {
        s.state
            .as_ref()
            .and_then(|st| st.terminated.as_ref())
            .is_some_and(|t| t.exit_code == 0)
    };
    let incomplete_init: Vec<&str> = init_statuses
        .iter()
        .filter(|s| !init_done(s))
        .map(|s| s.name.as_str())
        .collect();
    let init_failed_for_good = restart_policy == "Never"
        && init_statuses.iter().any(|s| {
            s.state
                .as_ref()
                .and_then(|st| st.terminated.as_ref())
                .is_some_and(|t| t.exit_code != 0)
        });
    let phase = phase(
        &statuses,
        !incomplete_init.is_empty(),
        init_failed_for_good,
        restart_policy,
    );

    let unready: Vec<&str> = statuses
        .iter()
        .filter(|s| !s.ready)
        .map(|s| s.name.as_str())
        .collect();
    let finished = matches!(phase, "Succeeded" | "Failed");
    let mut conditions = Vec::new();
    let old = |t: &str| {
        previous
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == t)
            .cloned()
    };
    let mut condition = |type_: &str, ok: bool, reason: Option<&str>, message: Option<String>| {
        let status = if ok { "True" } else { "False" };
        let since = old(type_)
            .filter(|c| c.status == status)
            .and_then(|c| c.last_transition_time)
            .unwrap_or(Time(now));
        conditions.push(PodCondition {
            type_: type_.to_owned(),
            status: status.to_owned(),
            last_transition_time: Some(since),
            last_probe_time: None,
            reason: reason.map(str::to_owned),
            message,
            observed_generation: None,
        });
    };
    condition(
        "PodReadyToStartContainers",
        observed.network_ready && !finished,
        None,
        None,
    );
    if incomplete_init.is_empty() {
        condition("Initialized", true, None, None);
    } else {
        condition(
            "Initialized",
            false,
            Some("ContainersNotInitialized"),
            Some(format!(
                "containers with incomplete status: [{}]",
                incomplete_init.join(" ")
            )),
        );
    }
    let (ready, reason, message) = if finished {
        (false, Some("PodCompleted"), None)
    } else if !incomplete_init.is_empty() {
        (
            false,
            Some("ContainersNotInitialized"),
            Some(format!(
                "containers with incomplete status: [{}]",
                incomplete_init.join(" ")
            )),
        )
    } else if unready.is_empty() {
        (true, None, None)
    } else {
        (
            false,
            Some("ContainersNotReady"),
            Some(format!(
                "containers with unready status: [{}]",
                unready.join(" ")
            )),
        )
    };
    condition("ContainersReady", ready, reason, message.clone());
    condition("Ready", ready, reason, message);
    let scheduled = old("PodScheduled").unwrap_or(PodCondition {
        type_: "PodScheduled".into(),
        status: "True".into(),
        last_transition_time: Some(Time(now)),
        ..Default::default()
    });
    conditions.push(scheduled);
    // Conditions others own (readiness gates, DisruptionTarget) are kept as written.
    for c in previous.conditions.iter().flatten() {
        if !conditions.iter().any(|have| have.type_ == c.type_) {
            conditions.push(c.clone());
        }
    }

    let pod_ips: Vec<PodIP> = observed
        .pod_ips
        .iter()
        .map(|ip| PodIP { ip: ip.to_string() })
        .collect();
    PodStatus {
        phase: Some(phase.to_owned()),
        conditions: Some(conditions),
        host_ip: observed.host_ip.map(|ip| ip.to_string()),
        host_ips: observed
            .host_ip
            .map(|ip| vec![HostIP { ip: ip.to_string() }]),
        pod_ip: pod_ips.first().map(|p| p.ip.clone()),
        pod_ips: (!pod_ips.is_empty()).then_some(pod_ips),
        start_time: previous.start_time.clone().or(Some(Time(now))),
        init_container_statuses: (!init_statuses.is_empty()).then_some(init_statuses),
        container_statuses: Some(statuses),
        qos_class: Some(qos_class(&spec.containers, spec.init_containers.as_deref()).to_owned()),
        nominated_node_name: previous.nominated_node_name,
        ..PodStatus::default()
    }
}

/// Upstream's getPhase.
fn phase(
    statuses: &[ContainerStatus],
    initializing: bool,
    init_failed_for_good: bool,
    restart_policy: &str,
) -> &'static str {
    if init_failed_for_good {
        return "Failed";
    }
    if initializing {
        return "Pending";
    }
    let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for s in statuses {
        let state = s.state.clone().unwrap_or_default();
        if state.running.is_some() {
            running += 1;
        } else if let Some(t) = state.terminated {
            stopped += 1;
            if t.exit_code == 0 {
                succeeded += 1;
            }
        } else if s
            .last_state
            .as_ref()
            .and_then(|l| l.terminated.as_ref())
            .is_some()
        {
            stopped += 1;
        } else {
            waiting += 1;
        }
    }
    if waiting > 0 {
        return "Pending";
    }
    if running > 0 {
        return "Running";
    }
    if stopped > 0 {
        if restart_policy == "Always" {
            return "Running";
        }
        if stopped == succeeded {
            return "Succeeded";
        }
        if restart_policy == "Never" {
            return "Failed";
        }
        return "Running";
    }
    "Pending"
}

fn container_status(c: &Container, observed: &Observed, init: bool) -> ContainerStatus {
    let (latest, previous) = match observed.records.get(&c.name) {
        Some((latest, previous)) => (Some(latest), previous.as_ref()),
        None => (None, None),
    };
    let waiting = observed.waiting.get(&c.name);
    let image = c.image.clone().unwrap_or_default();
    let mut status = ContainerStatus {
        name: c.name.clone(),
        image: latest.map(|r| r.image.clone()).unwrap_or(image),
        image_id: latest.map(|r| r.image_id.clone()).unwrap_or_default(),
        container_id: latest.map(|r| format!("containerd://{}", r.id)),
        restart_count: latest.map(|r| r.attempt as i32).unwrap_or(0),
        ready: false,
        started: Some(false),
        state: None,
        last_state: Some(ContainerState::default()),
        ..Default::default()
    };
    if let Some(prev) = previous {
        status.last_state = Some(ContainerState {
            terminated: terminated(prev),
            ..Default::default()
        });
    }
    let state = match (latest.map(|r| &r.state), waiting) {
        // A container waiting to be restarted shows Waiting (CrashLoopBackOff, ...) with
        // its exit as lastState, as kubelet does.
        (Some(State::Exited { .. }), Some((reason, message))) if !observed.terminating => {
            if let Some(latest) = latest {
                status.last_state = Some(ContainerState {
                    terminated: terminated(latest),
                    ..Default::default()
                });
            }
            ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some(reason.clone()),
                    message: Some(message.clone()).filter(|m| !m.is_empty()),
                }),
                ..Default::default()
            }
        }
        (Some(State::Exited { .. }), _) => ContainerState {
            terminated: latest.and_then(terminated),
            ..Default::default()
        },
        (Some(State::Running { .. }), _) => {
            let started = observed.started.get(&c.name).copied().unwrap_or(true);
            status.started = Some(started);
            status.ready = if init {
                false
            } else {
                started && observed.probe_ready.get(&c.name).copied().unwrap_or(true)
            };
            ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: latest.and_then(|r| r.started_at).map(Time),
                }),
                ..Default::default()
            }
        }
        (Some(State::Created) | None, waiting) => {
            let (reason, message) = waiting.cloned().unwrap_or_else(|| {
                let reason = if init {
                    "PodInitializing"
                } else {
                    "ContainerCreating"
                };
                (reason.to_owned(), String::new())
            });
            ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some(reason),
                    message: Some(message).filter(|m| !m.is_empty()),
                }),
                ..Default::default()
            }
        }
    };
    if init && state.terminated.as_ref().is_some_and(|t| t.exit_code == 0) {
        status.ready = true;
    }
    status.state = Some(state);
    status
}

fn terminated(r: &Record) -> Option<ContainerStateTerminated> {
    let State::Exited {
        code,
        reason,
        message,
        finished_at,
    } = &r.state
    else {
        return None;
    };
    Some(ContainerStateTerminated {
        exit_code: *code,
        reason: Some(reason.clone()).filter(|r| !r.is_empty()),
        message: message.clone(),
        started_at: r.started_at.map(Time),
        finished_at: finished_at.map(Time),
        container_id: Some(format!("containerd://{}", r.id)),
        signal: None,
    })
}

/// Upstream's GetPodQOS: Guaranteed when every container limits cpu and memory with
/// requests equal to limits; BestEffort when nothing is requested or limited; else
/// Burstable.
pub fn qos_class(containers: &[Container], init: Option<&[Container]>) -> &'static str {
    let all: Vec<&Container> = containers.iter().chain(init.unwrap_or(&[])).collect();
    let mut any = false;
    let mut guaranteed = true;
    for c in all {
        let r = c.resources.clone().unwrap_or_default();
        let requests: BTreeMap<_, _> = r.requests.unwrap_or_default();
        let limits: BTreeMap<_, _> = r.limits.unwrap_or_default();
        for name in ["cpu", "memory"] {
            let request = requests.get(name).map(|q| q.0.clone());
            let limit = limits.get(name).map(|q| q.0.clone());
            if request.is_some() || limit.is_some() {
                any = true;
            }
            match (request, limit) {
                (_, None) => guaranteed = false,
                (Some(req), Some(lim)) if !same_quantity(&req, &lim) => guaranteed = false,
                _ => {}
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

fn same_quantity(a: &str, b: &str) -> bool {
    use crate::api::validation::parse_quantity;
    match (parse_quantity(a), parse_quantity(b)) {
        (Ok(a), Ok(b)) => a.milli == b.milli,
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodSpec;
    use std::path::PathBuf;

    fn pod(restart: &str, init: &[&str], app: &[&str]) -> Pod {
        let c = |n: &&str| Container {
            name: n.to_string(),
            image: Some("busybox".into()),
            ..Default::default()
        };
        Pod {
            spec: Some(PodSpec {
                restart_policy: Some(restart.into()),
                init_containers: (!init.is_empty()).then(|| init.iter().map(c).collect()),
                containers: app.iter().map(c).collect(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn rec(name: &str, attempt: u32, state: State) -> Record {
        Record {
            id: format!("u-{name}-{attempt}"),
            pod_uid: "u".into(),
            pod_name: "p".into(),
            pod_namespace: "default".into(),
            name: name.into(),
            init: false,
            attempt,
            hash: String::new(),
            image: "docker.io/library/busybox:latest".into(),
            image_id: "sha256:abc".into(),
            log_path: PathBuf::new(),
            created_at: None,
            started_at: Some(Timestamp::UNIX_EPOCH),
            state,
        }
    }

    fn exited(code: i32) -> State {
        State::Exited {
            code,
            reason: if code == 0 { "Completed" } else { "Error" }.into(),
            message: None,
            finished_at: Some(Timestamp::UNIX_EPOCH),
        }
    }

    fn observe(records: Vec<(Record, Option<Record>)>) -> Observed {
        Observed {
            records: records
                .into_iter()
                .map(|(r, p)| (r.name.clone(), (r, p)))
                .collect(),
            network_ready: true,
            ..Default::default()
        }
    }

    fn cond<'a>(s: &'a PodStatus, t: &str) -> &'a PodCondition {
        s.conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == t)
            .unwrap()
    }

    #[test]
    fn nothing_started_yet_is_pending_container_creating() {
        let p = pod("Always", &[], &["web"]);
        let s = pod_status(&p, &observe(vec![]), Timestamp::UNIX_EPOCH);
        assert_eq!(s.phase.as_deref(), Some("Pending"));
        let cs = &s.container_statuses.as_ref().unwrap()[0];
        assert_eq!(
            cs.state
                .as_ref()
                .unwrap()
                .waiting
                .as_ref()
                .unwrap()
                .reason
                .as_deref(),
            Some("ContainerCreating")
        );
        let ready = cond(&s, "Ready");
        assert_eq!(ready.status, "False");
        assert_eq!(ready.reason.as_deref(), Some("ContainersNotReady"));
        assert_eq!(
            ready.message.as_deref(),
            Some("containers with unready status: [web]")
        );
        assert_eq!(s.qos_class.as_deref(), Some("BestEffort"));
    }

    #[test]
    fn running_is_ready_unless_probe_says_otherwise() {
        let p = pod("Always", &[], &["web"]);
        let mut o = observe(vec![(rec("web", 0, State::Running { pid: 1 }), None)]);
        let s = pod_status(&p, &o, Timestamp::UNIX_EPOCH);
        assert_eq!(s.phase.as_deref(), Some("Running"));
        assert_eq!(cond(&s, "Ready").status, "True");
        assert_eq!(cond(&s, "ContainersReady").status, "True");
        o.probe_ready.insert("web".into(), false);
        let s = pod_status(&p, &o, Timestamp::UNIX_EPOCH);
        assert_eq!(cond(&s, "Ready").status, "False");
    }

    #[test]
    fn crash_loop_shows_waiting_with_last_state() {
        let p = pod("Always", &[], &["web"]);
        let mut o = observe(vec![(
            rec("web", 3, exited(1)),
            Some(rec("web", 2, exited(1))),
        )]);
        o.waiting.insert(
            "web".into(),
            (
                "CrashLoopBackOff".into(),
                "back-off 40s restarting failed container=web".into(),
            ),
        );
        let s = pod_status(&p, &o, Timestamp::UNIX_EPOCH);
        let cs = &s.container_statuses.as_ref().unwrap()[0];
        assert_eq!(cs.restart_count, 3);
        let waiting = cs.state.as_ref().unwrap().waiting.as_ref().unwrap();
        assert_eq!(waiting.reason.as_deref(), Some("CrashLoopBackOff"));
        let last = cs.last_state.as_ref().unwrap().terminated.as_ref().unwrap();
        assert_eq!(last.exit_code, 1);
        assert_eq!(last.reason.as_deref(), Some("Error"));
        assert_eq!(s.phase.as_deref(), Some("Running"));
    }

    #[test]
    fn phases_of_finished_pods() {
        let o = observe(vec![(rec("job", 0, exited(0)), None)]);
        let s = pod_status(&pod("Never", &[], &["job"]), &o, Timestamp::UNIX_EPOCH);
        assert_eq!(s.phase.as_deref(), Some("Succeeded"));
        assert_eq!(cond(&s, "Ready").reason.as_deref(), Some("PodCompleted"));
        let o = observe(vec![(rec("job", 0, exited(2)), None)]);
        let s = pod_status(&pod("Never", &[], &["job"]), &o, Timestamp::UNIX_EPOCH);
        assert_eq!(s.phase.as_deref(), Some("Failed"));
        let s = pod_status(&pod("OnFailure", &[], &["job"]), &o, Timestamp::UNIX_EPOCH);
        assert_eq!(s.phase.as_deref(), Some("Running"));
        let s = pod_status(&pod("Always", &[], &["job"]), &o, Timestamp::UNIX_EPOCH);
        assert_eq!(s.phase.as_deref(), Some("Running"));
    }

    #[test]
    fn init_containers_gate_initialized() {
        let p = pod("Always", &["setup", "migrate"], &["web"]);
        let mut setup = rec("setup", 0, exited(0));
        setup.init = true;
        let o = observe(vec![(setup, None)]);
        let s = pod_status(&p, &o, Timestamp::UNIX_EPOCH);
        assert_eq!(s.phase.as_deref(), Some("Pending"));
        let init = cond(&s, "Initialized");
        assert_eq!(init.status, "False");
        assert_eq!(
            init.message.as_deref(),
            Some("containers with incomplete status: [migrate]")
        );
        let statuses = s.init_container_statuses.as_ref().unwrap();
        assert!(statuses[0].ready);
        assert_eq!(
            statuses[1]
                .state
                .as_ref()
                .unwrap()
                .waiting
                .as_ref()
                .unwrap()
                .reason
                .as_deref(),
            Some("PodInitializing")
        );
        let mut failed = rec("setup", 0, exited(1));
        failed.init = true;
        let s = pod_status(
            &pod("Never", &["setup"], &["web"]),
            &observe(vec![(failed, None)]),
            Timestamp::UNIX_EPOCH,
        );
        assert_eq!(s.phase.as_deref(), Some("Failed"));
    }

    #[test]
    fn transition_times_survive_unchanged_conditions() {
        let p = pod("Always", &[], &["web"]);
        let o = observe(vec![(rec("web", 0, State::Running { pid: 1 }), None)]);
        let first = pod_status(&p, &o, Timestamp::UNIX_EPOCH);
        let mut p2 = p.clone();
        p2.status = Some(first.clone());
        let later = Timestamp::from_second(1000).unwrap();
        let second = pod_status(&p2, &o, later);
        assert_eq!(
            cond(&second, "Ready").last_transition_time,
            cond(&first, "Ready").last_transition_time
        );
        assert_eq!(second.start_time, first.start_time);
    }

    #[test]
    fn qos_classes() {
        use k8s_openapi::api::core::v1::ResourceRequirements;
        use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
        let with = |req: &[(&str, &str)], lim: &[(&str, &str)]| Container {
            name: "c".into(),
            resources: Some(ResourceRequirements {
                requests: Some(
                    req.iter()
                        .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
                        .collect(),
                ),
                limits: Some(
                    lim.iter()
                        .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(qos_class(&[with(&[], &[])], None), "BestEffort");
        assert_eq!(qos_class(&[with(&[("cpu", "1")], &[])], None), "Burstable");
        assert_eq!(
            qos_class(
                &[with(
                    &[("cpu", "1000m"), ("memory", "1Gi")],
                    &[("cpu", "1"), ("memory", "1Gi")]
                )],
                None
            ),
            "Guaranteed"
        );
        assert_eq!(
            qos_class(&[with(&[], &[("cpu", "1"), ("memory", "1Gi")])], None),
            "Guaranteed"
        );
    }
}
