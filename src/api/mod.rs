//! The Kubernetes API as moor serves it, independent of HTTP: which kinds exist
//! ([`registry`]), and the pure rules applied to objects of those kinds. Objects are
//! `serde_json::Value`s so fields moor does not model round-trip untouched; k8s-openapi's
//! types give the semantics. Nothing here touches the store or the network.

pub mod apply;
pub mod defaults;
pub mod fields;
pub mod manifest_source;
pub mod registry;
pub mod schema;
pub mod selector;
pub mod strategic_merge;
pub mod validation;
