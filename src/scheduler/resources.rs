//! Resource arithmetic: what a pod asks for (with kube-scheduler's rules for init
//! containers, sidecars and overhead) and what a node offers, in integers — millicores for
//! cpu, bytes (or plain units) for everything else.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Node, PodSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::api::validation::parse_quantity;

/// The cpu a container without a cpu request is counted as when scoring (upstream
/// `DefaultMilliCPURequest`), so that pods without requests still spread.
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// The memory a container without a memory request is counted as when scoring (200 MiB).
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// Amounts of every resource kind the scheduler counts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    /// cpu in millicores.
    pub milli_cpu: i64,
    /// memory in bytes.
    pub memory: i64,
    /// ephemeral-storage in bytes.
    pub ephemeral_storage: i64,
    /// Everything else (extended resources like `example.com/gpu`, hugepages), in units.
    pub scalar: BTreeMap<String, i64>,
}

impl Resources {
    /// Parse a resource list (`requests`, `allocatable`, `overhead`).
    pub fn from_list(list: &BTreeMap<String, Quantity>) -> Self {
        let mut r = Resources::default();
        for (name, quantity) in list {
            r.set(name, quantity);
        }
        r
    }

    fn set(&mut self, name: &str, quantity: &Quantity) {
        // Stored objects passed validation, so a quantity that does not parse can only be a
        // corrupt object; counting it as zero keeps one bad pod from stopping the scheduler.
        let Ok(q) = parse_quantity(&quantity.0) else {
            return;
        };
        let milli = i64::try_from(q.milli).unwrap_or(i64::MAX);
        // Upstream `Value()`: whole units, rounded up.
        let value = milli.saturating_add(999).div_euclid(1000);
        match name {
            "cpu" => self.milli_cpu = milli,
            "memory" => self.memory = value,
            "ephemeral-storage" => self.ephemeral_storage = value,
            // Counted by the pod-count check, not as a resource.
            "pods" => {}
            other => {
                self.scalar.insert(other.to_owned(), value);
            }
        }
    }

    /// Whether nothing at all is asked for.
    pub fn is_zero(&self) -> bool {
        self.milli_cpu == 0
            && self.memory == 0
            && self.ephemeral_storage == 0
            && self.scalar.values().all(|v| *v == 0)
    }

    /// `self += other`.
    pub fn add(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.saturating_add(other.milli_cpu);
        self.memory = self.memory.saturating_add(other.memory);
        self.ephemeral_storage = self
            .ephemeral_storage
            .saturating_add(other.ephemeral_storage);
        for (name, v) in &other.scalar {
            let slot = self.scalar.entry(name.clone()).or_default();
            *slot = slot.saturating_add(*v);
        }
    }

    /// `self -= other`.
    pub fn sub(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.saturating_sub(other.milli_cpu);
        self.memory = self.memory.saturating_sub(other.memory);
        self.ephemeral_storage = self
            .ephemeral_storage
            .saturating_sub(other.ephemeral_storage);
        for (name, v) in &other.scalar {
            if let Some(slot) = self.scalar.get_mut(name) {
                *slot = slot.saturating_sub(*v);
                if *slot == 0 {
                    self.scalar.remove(name);
                }
            }
        }
    }

    /// Each resource raised to at least `other`'s amount.
    fn max_with(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.max(other.milli_cpu);
        self.memory = self.memory.max(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(other.ephemeral_storage);
        for (name, v) in &other.scalar {
            let slot = self.scalar.entry(name.clone()).or_default();
            *slot = (*slot).max(*v);
        }
    }
}

/// What a pod asks of a node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodRequests {
    /// The requests that must fit (upstream `PodRequests`).
    pub requests: Resources,
    /// cpu and memory as scoring counts them: a container without a request counts as
    /// [`DEFAULT_MILLI_CPU_REQUEST`] / [`DEFAULT_MEMORY_REQUEST`].
    pub non_zero_milli_cpu: i64,
    /// See `non_zero_milli_cpu`.
    pub non_zero_memory: i64,
}

/// What the pod requests, counted as kube-scheduler counts it: the sum of its containers
/// and its sidecars (init containers with `restartPolicy: Always`, which keep running), or
/// — if larger, resource by resource — what the init phase needs at its peak (each regular
/// init container plus the sidecars started before it); plus the pod's overhead.
pub fn pod_requests(spec: &PodSpec) -> PodRequests {
    let requests = |c: &Container| {
        c.resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .map(Resources::from_list)
            .unwrap_or_default()
    };
    let non_zero = |r: &Resources| {
        (
            if r.milli_cpu == 0 {
                DEFAULT_MILLI_CPU_REQUEST
            } else {
                r.milli_cpu
            },
            if r.memory == 0 {
                DEFAULT_MEMORY_REQUEST
            } else {
                r.memory
            },
        )
    };

    let mut total = Resources::default();
    let (mut nz_cpu, mut nz_mem) = (0i64, 0i64);
    for c in &spec.containers {
        let r = requests(c);
        let (cpu, mem) = non_zero(&r);
        nz_cpu = nz_cpu.saturating_add(cpu);
        nz_mem = nz_mem.saturating_add(mem);
        total.add(&r);
    }

    let mut sidecars = Resources::default();
    let (mut sidecar_nz_cpu, mut sidecar_nz_mem) = (0i64, 0i64);
    let mut init_peak = Resources::default();
    let (mut init_nz_cpu, mut init_nz_mem) = (0i64, 0i64);
    for c in spec.init_containers.as_deref().unwrap_or_default() {
        let r = requests(c);
        let (cpu, mem) = non_zero(&r);
        let (phase, phase_cpu, phase_mem) = if c.restart_policy.as_deref() == Some("Always") {
            // A sidecar runs alongside everything after it, main containers included.
            total.add(&r);
            nz_cpu = nz_cpu.saturating_add(cpu);
            nz_mem = nz_mem.saturating_add(mem);
            sidecars.add(&r);
            sidecar_nz_cpu = sidecar_nz_cpu.saturating_add(cpu);
            sidecar_nz_mem = sidecar_nz_mem.saturating_add(mem);
            (sidecars.clone(), sidecar_nz_cpu, sidecar_nz_mem)
        } else {
            let mut phase = r;
            phase.add(&sidecars);
            (
                phase,
                cpu.saturating_add(sidecar_nz_cpu),
                mem.saturating_add(sidecar_nz_mem),
            )
        };
        init_peak.max_with(&phase);
        init_nz_cpu = init_nz_cpu.max(phase_cpu);
        init_nz_mem = init_nz_mem.max(phase_mem);
    }
    total.max_with(&init_peak);
    nz_cpu = nz_cpu.max(init_nz_cpu);
    nz_mem = nz_mem.max(init_nz_mem);

    if let Some(overhead) = &spec.overhead {
        let overhead = Resources::from_list(overhead);
        total.add(&overhead);
        nz_cpu = nz_cpu.saturating_add(overhead.milli_cpu);
        nz_mem = nz_mem.saturating_add(overhead.memory);
    }
    PodRequests {
        requests: total,
        non_zero_milli_cpu: nz_cpu,
        non_zero_memory: nz_mem,
    }
}

/// What the node offers pods (`status.allocatable`) and how many pods it takes.
pub fn node_allocatable(node: &Node) -> (Resources, i64) {
    let Some(list) = node.status.as_ref().and_then(|s| s.allocatable.as_ref()) else {
        return (Resources::default(), 0);
    };
    let pods = list
        .get("pods")
        .and_then(|q| parse_quantity(&q.0).ok())
        .map(|q| i64::try_from(q.milli / 1000).unwrap_or(i64::MAX))
        .unwrap_or(0);
    (Resources::from_list(list), pods)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(v: serde_json::Value) -> PodSpec {
        serde_json::from_value(v).unwrap()
    }

    fn c(name: &str, cpu: &str, mem: &str) -> serde_json::Value {
        json!({"name": name, "resources": {"requests": {"cpu": cpu, "memory": mem}}})
    }

    #[test]
    fn containers_are_summed_and_units_parsed() {
        let r = pod_requests(&spec(
            json!({"containers": [c("a", "250m", "64Mi"), c("b", "1", "1G")]}),
        ));
        assert_eq!(r.requests.milli_cpu, 1250);
        assert_eq!(r.requests.memory, 64 * 1024 * 1024 + 1_000_000_000);
        assert_eq!(r.non_zero_milli_cpu, 1250);
    }

    #[test]
    fn init_containers_count_at_their_peak() {
        // Upstream's example: init 2 cpu and 1 cpu, main 1 cpu total → 2 cpu.
        let r = pod_requests(&spec(json!({
            "initContainers": [c("i1", "2", "1Gi"), c("i2", "1", "3Gi")],
            "containers": [c("a", "500m", "1Gi"), c("b", "500m", "1Gi")],
        })));
        assert_eq!(r.requests.milli_cpu, 2000);
        assert_eq!(r.requests.memory, 3 * 1024 * 1024 * 1024);
    }

    #[test]
    fn sidecars_add_to_everything_after_them() {
        // sidecar 1 cpu runs with the later init (2 cpu) and with the main containers.
        let mut sidecar = c("s", "1", "0");
        sidecar["restartPolicy"] = json!("Always");
        let r = pod_requests(&spec(json!({
            "initContainers": [sidecar, c("i", "2", "0")],
            "containers": [c("a", "500m", "0")],
        })));
        assert_eq!(r.requests.milli_cpu, 3000, "init phase: 2 + sidecar 1");
        let mut sidecar = c("s", "1", "0");
        sidecar["restartPolicy"] = json!("Always");
        let r = pod_requests(&spec(json!({
            "initContainers": [sidecar],
            "containers": [c("a", "4", "0")],
        })));
        assert_eq!(r.requests.milli_cpu, 5000, "main 4 + sidecar 1");
    }

    #[test]
    fn overhead_is_added_and_missing_requests_count_as_defaults_for_scoring() {
        let r = pod_requests(&spec(json!({
            "containers": [{"name": "a"}, {"name": "b", "resources": {"requests": {"example.com/gpu": "2"}}}],
            "overhead": {"cpu": "10m", "memory": "1Mi"},
        })));
        assert_eq!(r.requests.milli_cpu, 10);
        assert_eq!(r.requests.memory, 1024 * 1024);
        assert_eq!(r.requests.scalar.get("example.com/gpu"), Some(&2));
        assert_eq!(r.non_zero_milli_cpu, 2 * DEFAULT_MILLI_CPU_REQUEST + 10);
        assert_eq!(r.non_zero_memory, 2 * DEFAULT_MEMORY_REQUEST + 1024 * 1024);
        assert!(!r.requests.is_zero());
        assert!(
            pod_requests(&spec(json!({"containers": [{"name": "a"}]})))
                .requests
                .is_zero()
        );
    }

    #[test]
    fn allocatable_is_read_from_status() {
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": "n"},
            "status": {"allocatable": {"cpu": "3900m", "memory": "7Gi", "pods": "110", "ephemeral-storage": "10Gi"}},
        }))
        .unwrap();
        let (r, pods) = node_allocatable(&node);
        assert_eq!(
            (r.milli_cpu, r.memory, pods),
            (3900, 7 * 1024 * 1024 * 1024, 110)
        );
        assert_eq!(r.ephemeral_storage, 10 * 1024 * 1024 * 1024);
        assert_eq!(
            node_allocatable(&Node::default()),
            (Resources::default(), 0)
        );
    }
}
