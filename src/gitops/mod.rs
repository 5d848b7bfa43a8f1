//! GitOps: desired state from a folder or a git repository, applied to the cluster through
//! the API (server-side dry-run, then server-side apply), with safe pruning and a plan that
//! `moor diff` renders.
//!
//! - [`source`]: where manifests come from — a folder ([`source::dir`]) or a git commit's
//!   tree ([`source::git`]) — as a [`source::Snapshot`] of files plus a revision, and how
//!   changes are noticed.
//! - [`loader`]: files → Kubernetes objects, with `file:line` for every error.
//!
//! This module talks to the cluster only through the Kubernetes API (a `kube::Client`),
//! never to the store, so it behaves the same in-process and against a remote server.

pub mod apply;
pub mod controller;
pub mod diff;
pub mod kinds;
pub mod loader;
pub mod plan;
pub mod source;
pub mod sync;
