//! moor: a Kubernetes-compatible control plane in one binary, with GitOps built in.
//!
//! The map of the crate, following the data flow:
//!
//! - [`store`]: the versioned key-value store holding all cluster state, behind the
//!   [`store::Store`] trait — [`store::EmbeddedStore`] (SQLite, the default) and
//!   [`store::EtcdStore`] (etcd, for several servers).
//! - [`api`]: the kinds served and the rules applied to their objects (registry, defaults,
//!   validation, selectors, patches), independent of HTTP.
//! - [`apiserver`]: the Kubernetes REST API over the store — routing, watch caches, reads,
//!   writes, discovery and OpenAPI.
//! - [`auth`]: who is calling and what they may do — the cluster CA and certificates,
//!   authentication (client certificates, tokens) and authorization (RBAC, nodes).
//! - [`controllers`]: the controller manager — ReplicaSets, … — on kube-runtime, under
//!   leader election.
//! - [`gitops`]: desired state from folders and git repositories — sources, the manifest
//!   loader, plans made by server-side dry-run, apply and safe prune, the source controller
//!   that keeps the cluster following them, and the rendering of `moor diff`.
//! - [`scheduler`]: places pending pods on nodes — watches, an incremental cache, the
//!   scheduling queue, filter and score plugins, optimistic binding — under leader election.
//! - [`kubelet`]: the node agent — registers its machine as a Node, keeps its Lease, and
//!   runs the pods bound to it through containerd (images, OCI specs, CNI pod networks,
//!   volumes, lifecycle, status, logs).
//! - [`proxy`]: the service proxy — makes every Service's cluster IP local to the node and
//!   forwards its TCP and UDP ports (and NodePorts) to ready endpoints.
//! - [`dns`]: cluster DNS — `<svc>.<ns>.svc.cluster.local` and friends answered from
//!   Services and EndpointSlices, everything else forwarded to the host's resolvers.
//! - [`metrics`]: the process's Prometheus metrics — one registry for every component in
//!   the process, served as OpenMetrics text at `/metrics` by the API server and the agent.
//! - [`fuzzing`]: fuzz targets' entry points, used by `fuzz/` and `tests/fuzz_regressions.rs`.
//! - [`cli`]: the `moor` command line; one file per subcommand. `src/main.rs` only parses
//!   arguments and calls into it.

pub mod api;
pub mod apiserver;
pub mod auth;
pub mod cli;
pub mod controllers;
pub mod dns;
pub mod fuzzing;
pub mod gitops;
pub mod kubelet;
pub mod metrics;
pub mod proxy;
pub mod scheduler;
pub mod store;
