//! Prometheus metrics of the whole process: one set of metric families, what each
//! component records into them, and their OpenMetrics text for `GET /metrics`.
//!
//! The families live in one process-wide registry because `moor up` runs the API server,
//! controllers, scheduler, source controller and node agent in one process: both `/metrics`
//! endpoints (the API server's and the kubelet API's) show everything the process does.
//! Names follow Kubernetes' own where one exists (`apiserver_request_total`,
//! `scheduler_scheduling_attempt_duration_seconds`, `kubelet_pod_start_duration_seconds`,
//! ...), with kube-apiserver's label values, so existing dashboards and recording rules
//! read them unchanged; what Kubernetes has no name for is `moor_*`.
//!
//! This module owns the families and typed recording functions; it knows nothing of HTTP
//! or of any component. Components call the functions below; serving the text is the
//! routers' business ([`crate::apiserver`], [`crate::kubelet::server`]). Labels are kept
//! to bounded sets — verbs, resources, controller names, results, ManifestSource names and
//! their current revision — never pod names or namespaces.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// The content type of [`encode`]'s text (OpenMetrics 1.0, which Prometheus asks for first).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Buckets for work measured in milliseconds: API requests, reconciles, scheduling
/// decisions (100 µs to 10 s; in-process requests and decisions take well under 1 ms).
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];
/// Buckets for a pod's wait from the queue to its binding (ms when nodes have room, minutes
/// when a pod waits for capacity).
const SCHEDULING_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    300.0, 600.0,
];
/// Buckets for a source sync (read, load, plan by server-side dry-run, apply).
const SYNC_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];
/// Buckets for a pod's start (image pulls make minutes possible).
const POD_START_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

/// Makes histograms with a fixed bucket set (a `fn` pointer rather than a closure, so the
/// family's type can be named in a struct field).
#[derive(Clone, Copy)]
pub struct Buckets(&'static [f64]);

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(self.0.iter().copied())
    }
}

type HistogramFamily<L> = Family<L, Histogram, Buckets>;

fn histograms<L: Clone + std::hash::Hash + Eq>(buckets: &'static [f64]) -> HistogramFamily<L> {
    Family::new_with_constructor(Buckets(buckets))
}

/// What an API request was, in kube-apiserver's metric labels.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// kube-apiserver's metric verb: `GET` (one object), `LIST`, `WATCH`, `POST`, `PUT`,
    /// `PATCH`, `APPLY` (server-side apply), `DELETE` or `DELETECOLLECTION`.
    pub verb: &'static str,
    /// API group (`""` for core).
    pub group: &'static str,
    /// API version.
    pub version: &'static str,
    /// Plural resource name.
    pub resource: &'static str,
    /// Subresource (`status`, `scale`, `binding`, `log`, `finalize`), or `""`.
    pub subresource: &'static str,
    /// `resource` (one object), `namespace` (a namespace's collection) or `cluster`.
    pub scope: &'static str,
}

impl RequestLabels {
    /// Whether kube-apiserver counts such a request as long-running (watches and logs):
    /// counted while open rather than timed to its end.
    pub fn is_long_running(&self) -> bool {
        self.verb == "WATCH" || self.subresource == "log"
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestCodeLabels {
    #[prometheus(flatten)]
    request: RequestLabels,
    code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ControllerLabels {
    controller: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ControllerResultLabels {
    controller: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceResultLabels {
    source: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceRevisionLabels {
    source: String,
    revision: String,
}

/// Every family, registered once.
struct Metrics {
    registry: Registry,
    request_duration: HistogramFamily<RequestLabels>,
    requests: Family<RequestCodeLabels, Counter>,
    longrunning: Family<RequestLabels, Gauge>,
    reconcile_duration: HistogramFamily<ControllerLabels>,
    reconciles: Family<ControllerResultLabels, Counter>,
    scheduling_attempt_duration: HistogramFamily<ResultLabels>,
    schedule_attempts: Family<ResultLabels, Counter>,
    pod_scheduling_duration: Histogram,
    source_sync_duration: HistogramFamily<SourceLabels>,
    source_syncs: Family<SourceResultLabels, Counter>,
    source_revision: Family<SourceRevisionLabels, Gauge>,
    /// The revision each source's info series carries now, so a new one replaces it.
    /// A std mutex: held only to swap a map entry, never across an await.
    source_revisions: Mutex<HashMap<String, String>>,
    pod_start_duration: Histogram,
    running_pods: Gauge,
}

impl Metrics {
    fn new() -> Self {
        let mut m = Metrics {
            registry: Registry::default(),
            request_duration: histograms(LATENCY_BUCKETS),
            requests: Family::default(),
            longrunning: Family::default(),
            reconcile_duration: histograms(LATENCY_BUCKETS),
            reconciles: Family::default(),
            scheduling_attempt_duration: histograms(LATENCY_BUCKETS),
            schedule_attempts: Family::default(),
            pod_scheduling_duration: Histogram::new(SCHEDULING_BUCKETS.iter().copied()),
            source_sync_duration: histograms(SYNC_BUCKETS),
            source_syncs: Family::default(),
            source_revision: Family::default(),
            source_revisions: Mutex::new(HashMap::new()),
            pod_start_duration: Histogram::new(POD_START_BUCKETS.iter().copied()),
            running_pods: Gauge::default(),
        };
        // Counters get their `_total` suffix and histograms with a unit their `_seconds`
        // from the encoder, as OpenMetrics requires.
        m.registry.register_with_unit(
            "apiserver_request_duration",
            "Response latency distribution in seconds for each verb, group, version, resource, subresource and scope (watches and logs: until the response starts)",
            Unit::Seconds,
            m.request_duration.clone(),
        );
        m.registry.register(
            "apiserver_request",
            "Counter of apiserver requests broken out for each verb, group, version, resource, subresource, scope and HTTP response code",
            m.requests.clone(),
        );
        m.registry.register(
            "apiserver_longrunning_requests",
            "Gauge of all active long-running apiserver requests (watches and logs) broken out by verb, group, version, resource, subresource and scope",
            m.longrunning.clone(),
        );
        m.registry.register_with_unit(
            "moor_controller_reconcile_duration",
            "Time each reconcile of a controller took",
            Unit::Seconds,
            m.reconcile_duration.clone(),
        );
        m.registry.register(
            "moor_controller_reconcile",
            "Reconciles of each controller by result (success, error)",
            m.reconciles.clone(),
        );
        m.registry.register_with_unit(
            "scheduler_scheduling_attempt_duration",
            "Scheduling attempt latency in seconds (decision and binding) by result (scheduled, unschedulable, error)",
            Unit::Seconds,
            m.scheduling_attempt_duration.clone(),
        );
        m.registry.register(
            "scheduler_schedule_attempts",
            "Number of attempts to schedule pods, by the result (scheduled, unschedulable, error)",
            m.schedule_attempts.clone(),
        );
        m.registry.register_with_unit(
            "scheduler_pod_scheduling_duration",
            "E2e latency for a pod being scheduled, from the time the pod enters the scheduling queue to its binding",
            Unit::Seconds,
            m.pod_scheduling_duration.clone(),
        );
        m.registry.register_with_unit(
            "moor_source_sync_duration",
            "Time each sync of a ManifestSource took (read, load, plan, apply)",
            Unit::Seconds,
            m.source_sync_duration.clone(),
        );
        m.registry.register(
            "moor_source_syncs",
            "Syncs of each ManifestSource by result (applied, invalid, apply_failed, error, unavailable)",
            m.source_syncs.clone(),
        );
        m.registry.register(
            "moor_source_last_sync_revision_info",
            "The revision each ManifestSource last applied (value 1; one series per source)",
            m.source_revision.clone(),
        );
        m.registry.register_with_unit(
            "kubelet_pod_start_duration",
            "Duration in seconds from the agent seeing a pod for the first time to all its containers running",
            Unit::Seconds,
            m.pod_start_duration.clone(),
        );
        m.registry.register(
            "kubelet_running_pods",
            "Number of pods with a running container on this process's nodes",
            m.running_pods.clone(),
        );
        m
    }
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// Every family in the OpenMetrics text format (ends with `# EOF`).
pub fn encode() -> String {
    let mut text = String::new();
    // Writing into a String cannot fail, and no label value here fails to encode.
    if let Err(error) = prometheus_client::encoding::text::encode(&mut text, &METRICS.registry) {
        tracing::warn!(%error, "encoding the metrics");
    }
    text
}

/// Record one API request: counted with its response code, timed (a long-running one until
/// its response started, as the caller measures it).
pub fn api_request(labels: RequestLabels, code: u16, elapsed: Duration) {
    let m = &*METRICS;
    m.request_duration
        .get_or_create(&labels)
        .observe(elapsed.as_secs_f64());
    m.requests
        .get_or_create(&RequestCodeLabels {
            request: labels,
            code,
        })
        .inc();
}

/// A long-running request (a watch, a log stream) open: counted in
/// `apiserver_longrunning_requests` until dropped.
#[derive(Debug)]
pub struct LongRunning(Gauge);

impl LongRunning {
    /// Count one more open request of this kind.
    pub fn start(labels: &RequestLabels) -> Self {
        let gauge = METRICS.longrunning.get_or_create_owned(labels);
        gauge.inc();
        LongRunning(gauge)
    }
}

impl Drop for LongRunning {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Run one reconcile of `controller` (a name from [`crate::controllers::CONTROLLERS`]),
/// timing it and counting its result.
pub async fn timed_reconcile<T, E>(
    controller: &'static str,
    reconcile: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    let started = Instant::now();
    let result = reconcile.await;
    let m = &*METRICS;
    m.reconcile_duration
        .get_or_create(&ControllerLabels { controller })
        .observe(started.elapsed().as_secs_f64());
    m.reconciles
        .get_or_create(&ControllerResultLabels {
            controller,
            result: if result.is_ok() { "success" } else { "error" },
        })
        .inc();
    result
}

/// How a scheduling attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attempt {
    /// Placed and bound.
    Scheduled,
    /// No node fits.
    Unschedulable,
    /// The binding failed (retried).
    Error,
}

impl Attempt {
    fn label(self) -> &'static str {
        match self {
            Attempt::Scheduled => "scheduled",
            Attempt::Unschedulable => "unschedulable",
            Attempt::Error => "error",
        }
    }
}

/// Record one scheduling attempt that took `elapsed` (decision, plus binding when there
/// was one).
pub fn scheduling_attempt(result: Attempt, elapsed: Duration) {
    let labels = ResultLabels {
        result: result.label(),
    };
    let m = &*METRICS;
    m.scheduling_attempt_duration
        .get_or_create(&labels)
        .observe(elapsed.as_secs_f64());
    m.schedule_attempts.get_or_create(&labels).inc();
}

/// Record a pod bound `elapsed` after it entered the scheduling queue.
pub fn pod_scheduled(elapsed: Duration) {
    METRICS
        .pod_scheduling_duration
        .observe(elapsed.as_secs_f64());
}

/// How a source sync ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncResult {
    /// The revision was applied without errors.
    Applied,
    /// The revision has errors in its manifests or plan; nothing was applied.
    Invalid,
    /// Some writes of the apply failed.
    ApplyFailed,
    /// The API server could not be asked (planning failed).
    Error,
    /// The source could not be read (fetch, folder, ref).
    Unavailable,
}

impl SyncResult {
    fn label(self) -> &'static str {
        match self {
            SyncResult::Applied => "applied",
            SyncResult::Invalid => "invalid",
            SyncResult::ApplyFailed => "apply_failed",
            SyncResult::Error => "error",
            SyncResult::Unavailable => "unavailable",
        }
    }
}

/// Record one sync of the ManifestSource `source`; `elapsed` is None when the source could
/// not be read (nothing was synced to time).
pub fn source_synced(source: &str, result: SyncResult, elapsed: Option<Duration>) {
    let m = &*METRICS;
    if let Some(elapsed) = elapsed {
        m.source_sync_duration
            .get_or_create(&SourceLabels {
                source: source.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
    }
    m.source_syncs
        .get_or_create(&SourceResultLabels {
            source: source.to_owned(),
            result: result.label(),
        })
        .inc();
}

/// The ManifestSource `source` now has `revision` applied: its info series carries it
/// (the series of its previous revision is removed).
pub fn source_revision(source: &str, revision: &str) {
    let m = &*METRICS;
    let mut current = m
        .source_revisions
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(old) = current.insert(source.to_owned(), revision.to_owned())
        && old != revision
    {
        m.source_revision.remove(&SourceRevisionLabels {
            source: source.to_owned(),
            revision: old,
        });
    }
    m.source_revision
        .get_or_create(&SourceRevisionLabels {
            source: source.to_owned(),
            revision: revision.to_owned(),
        })
        .set(1);
}

/// The ManifestSource `source` is gone: its revision series goes too (its counters stay,
/// as counters do).
pub fn forget_source(source: &str) {
    let m = &*METRICS;
    let old = m
        .source_revisions
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .remove(source);
    if let Some(revision) = old {
        m.source_revision.remove(&SourceRevisionLabels {
            source: source.to_owned(),
            revision,
        });
    }
}

/// Record a pod whose containers all run `elapsed` after the agent first saw it.
pub fn pod_started(elapsed: Duration) {
    METRICS.pod_start_duration.observe(elapsed.as_secs_f64());
}

/// A pod with a running container on a node of this process: counted in
/// `kubelet_running_pods` until dropped.
#[derive(Debug)]
pub struct RunningPod(Gauge);

impl RunningPod {
    /// Count one more running pod.
    pub fn start() -> Self {
        let gauge = METRICS.running_pods.clone();
        gauge.inc();
        RunningPod(gauge)
    }
}

impl Drop for RunningPod {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the sample `name{labels}` (labels as encoded, in order), if present.
    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines().find_map(|line| {
            let rest = line.strip_prefix(series)?;
            rest.strip_prefix(' ')?.split(' ').next()?.parse().ok()
        })
    }

    const CONFIGMAP_GET: RequestLabels = RequestLabels {
        verb: "GET",
        group: "",
        version: "v1",
        resource: "unit-test-things",
        subresource: "",
        scope: "resource",
    };

    #[tokio::test]
    async fn every_family_is_described() {
        // Families without labels are shown from the start; a labelled family only once
        // it has a series (as client_golang's vectors), so give each one.
        let text = encode();
        for family in [
            "# TYPE scheduler_pod_scheduling_duration_seconds histogram",
            "# TYPE kubelet_pod_start_duration_seconds histogram",
            "# TYPE kubelet_running_pods gauge",
        ] {
            assert!(text.contains(family), "{family} missing from:\n{text}");
        }
        let labels = RequestLabels {
            verb: "WATCH",
            resource: "unit-test-described",
            ..CONFIGMAP_GET
        };
        api_request(labels, 200, Duration::ZERO);
        let _open = LongRunning::start(&labels);
        let _: Result<(), ()> = timed_reconcile("unit-test-described", async { Ok(()) }).await;
        scheduling_attempt(Attempt::Scheduled, Duration::ZERO);
        source_synced(
            "unit-test-described",
            SyncResult::Applied,
            Some(Duration::ZERO),
        );
        source_revision("unit-test-described", "cccc");
        let text = encode();
        for family in [
            "# TYPE apiserver_request_duration_seconds histogram",
            "# UNIT apiserver_request_duration_seconds seconds",
            "# TYPE apiserver_request counter",
            "# TYPE apiserver_longrunning_requests gauge",
            "# TYPE moor_controller_reconcile_duration_seconds histogram",
            "# TYPE moor_controller_reconcile counter",
            "# TYPE scheduler_scheduling_attempt_duration_seconds histogram",
            "# TYPE scheduler_schedule_attempts counter",
            "# TYPE scheduler_pod_scheduling_duration_seconds histogram",
            "# TYPE moor_source_sync_duration_seconds histogram",
            "# TYPE moor_source_syncs counter",
            "# TYPE moor_source_last_sync_revision_info gauge",
            "# TYPE kubelet_pod_start_duration_seconds histogram",
            "# TYPE kubelet_running_pods gauge",
        ] {
            assert!(text.contains(family), "{family} missing from:\n{text}");
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn requests_are_counted_by_code_and_timed() {
        api_request(CONFIGMAP_GET, 200, Duration::from_micros(300));
        api_request(CONFIGMAP_GET, 200, Duration::from_millis(20));
        api_request(CONFIGMAP_GET, 404, Duration::from_micros(100));
        let text = encode();
        let labels = r#"verb="GET",group="",version="v1",resource="unit-test-things",subresource="",scope="resource""#;
        assert_eq!(
            sample(
                &text,
                &format!("apiserver_request_total{{{labels},code=\"200\"}}")
            ),
            Some(2.0),
            "{text}"
        );
        assert_eq!(
            sample(
                &text,
                &format!("apiserver_request_total{{{labels},code=\"404\"}}")
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                &format!("apiserver_request_duration_seconds_count{{{labels}}}")
            ),
            Some(3.0)
        );
        // 100 µs and 300 µs fall at or below 0.0005 s, 20 ms does not.
        assert_eq!(
            sample(
                &text,
                &format!("apiserver_request_duration_seconds_bucket{{le=\"0.0005\",{labels}}}")
            ),
            Some(2.0),
            "{text}"
        );
    }

    #[test]
    fn long_running_requests_are_counted_while_open() {
        let labels = RequestLabels {
            verb: "WATCH",
            resource: "unit-test-watched",
            scope: "namespace",
            ..CONFIGMAP_GET
        };
        assert!(labels.is_long_running());
        assert!(!CONFIGMAP_GET.is_long_running());
        let series = r#"apiserver_longrunning_requests{verb="WATCH",group="",version="v1",resource="unit-test-watched",subresource="",scope="namespace"}"#;
        let first = LongRunning::start(&labels);
        let second = LongRunning::start(&labels);
        assert_eq!(sample(&encode(), series), Some(2.0));
        drop(first);
        assert_eq!(sample(&encode(), series), Some(1.0));
        drop(second);
        assert_eq!(sample(&encode(), series), Some(0.0));
    }

    #[tokio::test]
    async fn reconciles_are_timed_by_controller_and_result() {
        let ok: Result<(), ()> = timed_reconcile("unit-test-controller", async { Ok(()) }).await;
        assert!(ok.is_ok());
        let failed: Result<(), &str> =
            timed_reconcile("unit-test-controller", async { Err("no") }).await;
        assert_eq!(failed, Err("no"));
        let text = encode();
        for (series, value) in [
            (
                r#"moor_controller_reconcile_total{controller="unit-test-controller",result="success"}"#,
                1.0,
            ),
            (
                r#"moor_controller_reconcile_total{controller="unit-test-controller",result="error"}"#,
                1.0,
            ),
            (
                r#"moor_controller_reconcile_duration_seconds_count{controller="unit-test-controller"}"#,
                2.0,
            ),
        ] {
            assert_eq!(sample(&text, series), Some(value), "{series} in:\n{text}");
        }
    }

    #[test]
    fn a_source_shows_only_its_current_revision() {
        source_synced(
            "unit-test-source",
            SyncResult::Applied,
            Some(Duration::from_millis(40)),
        );
        source_revision("unit-test-source", "aaaa");
        source_revision("unit-test-source", "bbbb");
        source_synced("unit-test-source", SyncResult::Unavailable, None);
        let text = encode();
        let old =
            r#"moor_source_last_sync_revision_info{source="unit-test-source",revision="aaaa"}"#;
        let new =
            r#"moor_source_last_sync_revision_info{source="unit-test-source",revision="bbbb"}"#;
        assert_eq!(sample(&text, old), None, "{text}");
        assert_eq!(sample(&text, new), Some(1.0), "{text}");
        assert_eq!(
            sample(
                &text,
                r#"moor_source_syncs_total{source="unit-test-source",result="unavailable"}"#
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                r#"moor_source_sync_duration_seconds_count{source="unit-test-source"}"#
            ),
            Some(1.0),
            "an unreadable source has no sync to time"
        );
        forget_source("unit-test-source");
        assert_eq!(sample(&encode(), new), None);
    }

    #[test]
    fn scheduling_attempts_are_labelled_by_result() {
        scheduling_attempt(Attempt::Unschedulable, Duration::from_micros(50));
        let text = encode();
        let count = sample(
            &text,
            r#"scheduler_scheduling_attempt_duration_seconds_count{result="unschedulable"}"#,
        );
        assert!(count.is_some_and(|c| c >= 1.0), "{text}");
        assert!(
            sample(
                &text,
                r#"scheduler_schedule_attempts_total{result="unschedulable"}"#
            )
            .is_some_and(|c| c >= 1.0)
        );
    }
}
