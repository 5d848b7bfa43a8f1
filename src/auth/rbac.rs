//! Role-based access control (`rbac.authorization.k8s.io/v1`): kube-apiserver's RBAC
//! authorizer (`plugin/pkg/auth/authorizer/rbac`) as pure logic over stored objects.
//!
//! This module owns:
//! - [`Policy`]: Roles, ClusterRoles, RoleBindings and ClusterRoleBindings parsed once into
//!   typed rules, with every binding's role resolved and ClusterRole aggregation
//!   (`aggregationRule.clusterRoleSelectors`) applied at build time, and bindings indexed by
//!   the users and groups they name, so that [`Policy::authorize`] does no JSON work and
//!   looks only at bindings that can apply to the caller;
//! - [`Policy::authorize`]: upstream's decision — only ever [`Decision::Allow`] (with
//!   upstream's reason text) or [`Decision::NoOpinion`], never a denial;
//! - [`Policy::rules_for`]: what a SelfSubjectRulesReview (`kubectl auth can-i --list`) lists;
//! - [`default_objects`]: the bootstrap policy kube-apiserver creates at start.
//!
//! It must not touch HTTP or the store: the API server feeds it the stored objects (and
//! rebuilds it when they change) and turns a request into [`Attributes`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use k8s_openapi::api::authorization::v1::{NonResourceRule, ResourceRule};
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use serde_json::{Value, json};

use crate::api::selector::{LabelSelector, SelectorError};
use crate::auth::{
    Attributes, Decision, GROUP_AUTHENTICATED, GROUP_BOOTSTRAPPERS, GROUP_MASTERS,
    GROUP_UNAUTHENTICATED, UserInfo,
};

/// The RBAC API group.
pub const GROUP: &str = "rbac.authorization.k8s.io";
/// The apiVersion RBAC objects are served and stored in.
pub const API_VERSION: &str = "rbac.authorization.k8s.io/v1";
/// The annotation that marks a bootstrap object the server may reconcile at start.
pub const AUTOUPDATE_ANNOTATION: &str = "rbac.authorization.kubernetes.io/autoupdate";
/// The label every bootstrap object carries.
pub const BOOTSTRAPPING_LABEL: &str = "kubernetes.io/bootstrapping";
/// The value of [`BOOTSTRAPPING_LABEL`] on bootstrap objects.
pub const BOOTSTRAPPING_VALUE: &str = "rbac-defaults";
/// The prefix of ServiceAccount user names: `system:serviceaccount:NAMESPACE:NAME`.
pub const SERVICE_ACCOUNT_USER_PREFIX: &str = "system:serviceaccount:";
use super::NODE_CERTIFICATE_PATH;

/// Why an object given to [`Policy::from_objects`] contributes nothing, or less than it says.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The object does not decode into its RBAC type (a field of the wrong shape).
    #[error("{kind} {name:?} is malformed and grants nothing: {source}")]
    Malformed {
        /// Role, ClusterRole, RoleBinding or ClusterRoleBinding.
        kind: String,
        /// `metadata.name` as far as it could be read (may be empty).
        name: String,
        /// What serde found wrong.
        #[source]
        source: serde_json::Error,
    },
    /// The object has no `metadata.name` (or a namespaced one no namespace).
    #[error("{kind} without {missing} is ignored")]
    Unnamed {
        /// The object's kind.
        kind: String,
        /// `metadata.name` or `metadata.namespace`.
        missing: &'static str,
    },
    /// A binding's `roleRef.kind` is neither Role nor ClusterRole (or is absent).
    #[error("{binding} refers to a role of kind {kind:?} and grants nothing")]
    RoleRefKind {
        /// `RoleBinding "name/namespace"` or `ClusterRoleBinding "name"`.
        binding: String,
        /// The kind it names.
        kind: String,
    },
    /// One of a ClusterRole's aggregation selectors cannot be evaluated; it selects nothing.
    #[error(
        "ClusterRole {role:?}: aggregationRule.clusterRoleSelectors[{index}] selects nothing: {source}"
    )]
    Selector {
        /// The aggregated ClusterRole.
        role: String,
        /// Index of the selector.
        index: usize,
        /// Why it is invalid.
        #[source]
        source: SelectorError,
    },
}

// ---------------------------------------------------------------------------------------
// Rules
// ---------------------------------------------------------------------------------------

/// `*`: every verb, group, resource or non-resource URL.
const ALL: &str = "*";

/// A [`PolicyRule`] prepared for matching: absent lists are empty and wildcards are flags,
/// so matching is a few slice scans (upstream's `rbacv1helpers` functions, exactly).
#[derive(Debug)]
struct Rule {
    all_verbs: bool,
    verbs: Vec<String>,
    all_groups: bool,
    api_groups: Vec<String>,
    all_resources: bool,
    resources: Vec<String>,
    resource_names: Vec<String>,
    all_urls: bool,
    non_resource_urls: Vec<String>,
    /// The rule as written, for [`Policy::rules_for`].
    source: PolicyRule,
}

impl Rule {
    fn new(source: PolicyRule) -> Self {
        let list = |v: &Option<Vec<String>>| v.clone().unwrap_or_default();
        let has_all = |v: &[String]| v.iter().any(|s| s == ALL);
        let verbs = source.verbs.clone();
        let api_groups = list(&source.api_groups);
        let resources = list(&source.resources);
        let non_resource_urls = list(&source.non_resource_urls);
        Rule {
            all_verbs: has_all(&verbs),
            all_groups: has_all(&api_groups),
            all_resources: has_all(&resources),
            all_urls: has_all(&non_resource_urls),
            verbs,
            api_groups,
            resources,
            resource_names: list(&source.resource_names),
            non_resource_urls,
            source,
        }
    }

    /// Upstream `RuleAllows`.
    fn allows(&self, attrs: &Attributes) -> bool {
        if !self.verb_matches(&attrs.verb) {
            return false;
        }
        match &attrs.resource {
            Some(r) => {
                self.group_matches(&r.group)
                    && self.resource_matches(&r.resource, &r.subresource)
                    && self.name_matches(&r.name)
            }
            None => self.url_matches(&attrs.path),
        }
    }

    fn verb_matches(&self, verb: &str) -> bool {
        self.all_verbs || self.verbs.iter().any(|v| v == verb)
    }

    fn group_matches(&self, group: &str) -> bool {
        self.all_groups || self.api_groups.iter().any(|g| g == group)
    }

    /// `*`, the exact `resource` or `resource/subresource`, or `*/subresource`.
    fn resource_matches(&self, resource: &str, subresource: &str) -> bool {
        if self.all_resources {
            return true;
        }
        self.resources.iter().any(|rule| {
            if subresource.is_empty() {
                return rule == resource;
            }
            match rule.split_once('/') {
                Some((r, s)) => s == subresource && (r == resource || r == ALL),
                None => false,
            }
        })
    }

    /// No resourceNames means every name; otherwise only requests naming one of them (so
    /// never a list, watch, create or deletecollection, which name nothing).
    fn name_matches(&self, name: &str) -> bool {
        self.resource_names.is_empty() || self.resource_names.iter().any(|n| n == name)
    }

    /// `*`, the exact path, or a prefix written with a trailing `*`.
    fn url_matches(&self, path: &str) -> bool {
        self.all_urls
            || self
                .non_resource_urls
                .iter()
                .any(|u| match u.strip_suffix('*') {
                    Some(prefix) => path.starts_with(prefix.trim_end_matches('*')),
                    None => u == path,
                })
    }
}

/// A role's rules, shared by every binding that references it.
type Rules = Arc<[Rule]>;

// ---------------------------------------------------------------------------------------
// Bindings
// ---------------------------------------------------------------------------------------

/// A RoleBinding or ClusterRoleBinding whose role exists.
#[derive(Debug)]
struct Binding {
    name: String,
    /// Empty for a ClusterRoleBinding.
    namespace: String,
    role_ref: RoleRef,
    subjects: Vec<Subject>,
    rules: Rules,
}

impl Binding {
    /// The first subject naming `user` (upstream `appliesTo`).
    fn subject_for(&self, user: &UserInfo) -> Option<&Subject> {
        self.subjects
            .iter()
            .find(|s| subject_applies(s, user, &self.namespace))
    }
}

/// Upstream `appliesToUser`: a ServiceAccount subject without a namespace means the
/// binding's namespace (and matches nothing in a ClusterRoleBinding).
fn subject_applies(subject: &Subject, user: &UserInfo, binding_namespace: &str) -> bool {
    match subject.kind.as_str() {
        "User" => user.name == subject.name,
        "Group" => user.in_group(&subject.name),
        "ServiceAccount" => {
            service_account_user(subject, binding_namespace).is_some_and(|name| name == user.name)
        }
        _ => false,
    }
}

/// The user name a ServiceAccount subject stands for, if it has a namespace.
fn service_account_user(subject: &Subject, binding_namespace: &str) -> Option<String> {
    let namespace = subject
        .namespace
        .as_deref()
        .filter(|n| !n.is_empty())
        .unwrap_or(binding_namespace);
    (!namespace.is_empty())
        .then(|| format!("{SERVICE_ACCOUNT_USER_PREFIX}{namespace}:{}", subject.name))
}

/// Upstream's `describeSubject`.
struct SubjectText<'a>(&'a Subject, &'a str);

impl fmt::Display for SubjectText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let SubjectText(s, binding_namespace) = self;
        if s.kind == "ServiceAccount" {
            let ns = s
                .namespace
                .as_deref()
                .filter(|n| !n.is_empty())
                .unwrap_or(binding_namespace);
            write!(f, "{} {:?}", s.kind, format!("{}/{ns}", s.name))
        } else {
            write!(f, "{} {:?}", s.kind, s.name)
        }
    }
}

/// Upstream's `clusterRoleBindingDescriber` / `roleBindingDescriber`: what allowed it.
fn describe(binding: &Binding, subject: &Subject) -> String {
    let (kind, name) = if binding.namespace.is_empty() {
        ("ClusterRoleBinding", binding.name.clone())
    } else {
        (
            "RoleBinding",
            format!("{}/{}", binding.name, binding.namespace),
        )
    };
    format!(
        "{kind} {name:?} of {} {:?} to {}",
        binding.role_ref.kind,
        binding.role_ref.name,
        SubjectText(subject, &binding.namespace)
    )
}

/// Bindings of one scope (cluster-wide, or one namespace), indexed by the user names and
/// groups their subjects name, in the order they were given.
#[derive(Debug, Default)]
struct BindingIndex {
    bindings: Vec<Binding>,
    by_user: HashMap<String, Vec<usize>>,
    by_group: HashMap<String, Vec<usize>>,
}

impl BindingIndex {
    fn add(&mut self, binding: Binding) {
        let i = self.bindings.len();
        for s in &binding.subjects {
            let (index, key) = match s.kind.as_str() {
                "User" => (&mut self.by_user, s.name.clone()),
                "Group" => (&mut self.by_group, s.name.clone()),
                "ServiceAccount" => match service_account_user(s, &binding.namespace) {
                    Some(user) => (&mut self.by_user, user),
                    None => continue,
                },
                _ => continue,
            };
            let slot = index.entry(key).or_default();
            if slot.last() != Some(&i) {
                slot.push(i);
            }
        }
        self.bindings.push(binding);
    }

    /// The bindings that name `user` or one of its groups, in binding order.
    fn for_user(&self, user: &UserInfo) -> impl Iterator<Item = &Binding> {
        let mut hits: Vec<usize> = self.by_user.get(&user.name).cloned().unwrap_or_default();
        for g in &user.groups {
            hits.extend(self.by_group.get(g).into_iter().flatten());
        }
        hits.sort_unstable();
        hits.dedup();
        hits.into_iter().map(|i| &self.bindings[i])
    }
}

// ---------------------------------------------------------------------------------------
// Policy
// ---------------------------------------------------------------------------------------

/// Every RBAC object of the cluster, ready to answer authorization questions.
#[derive(Debug, Default)]
pub struct Policy {
    cluster_bindings: BindingIndex,
    /// RoleBindings by namespace.
    role_bindings: HashMap<String, BindingIndex>,
    /// Counted for logs and tests: objects read, by kind.
    counts: BTreeMap<&'static str, usize>,
    problems: Vec<PolicyError>,
}

/// A ClusterRole as read, before aggregation.
struct ParsedClusterRole {
    name: String,
    labels: BTreeMap<String, String>,
    rules: Vec<PolicyRule>,
    /// `None` when the role is not aggregated.
    selectors: Option<Vec<LabelSelector>>,
}

fn decode<T: serde::de::DeserializeOwned>(
    kind: &str,
    obj: &Value,
    problems: &mut Vec<PolicyError>,
) -> Option<T> {
    match T::deserialize(obj) {
        Ok(v) => Some(v),
        Err(source) => {
            problems.push(PolicyError::Malformed {
                kind: kind.to_owned(),
                name: obj
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                source,
            });
            None
        }
    }
}

/// `metadata.name` (and `metadata.namespace` when `namespaced`), or a problem.
fn names(
    kind: &str,
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    namespaced: bool,
    problems: &mut Vec<PolicyError>,
) -> Option<(String, String)> {
    let name = meta.name.clone().unwrap_or_default();
    let namespace = meta.namespace.clone().unwrap_or_default();
    let missing = if name.is_empty() {
        "metadata.name"
    } else if namespaced && namespace.is_empty() {
        "metadata.namespace"
    } else {
        return Some((name, if namespaced { namespace } else { String::new() }));
    };
    problems.push(PolicyError::Unnamed {
        kind: kind.to_owned(),
        missing,
    });
    None
}

impl Policy {
    /// Build the policy from stored objects of any of the four RBAC kinds, in any order;
    /// objects of other kinds are ignored. A malformed object is skipped (see
    /// [`Policy::problems`]; each is also logged), never a panic. A binding whose role does
    /// not exist grants nothing.
    pub fn from_objects<'a>(objects: impl IntoIterator<Item = &'a Value>) -> Policy {
        let mut problems = Vec::new();
        let mut counts: BTreeMap<&'static str, usize> = BTreeMap::new();
        let mut roles: HashMap<(String, String), Vec<PolicyRule>> = HashMap::new();
        let mut cluster_roles: Vec<ParsedClusterRole> = Vec::new();
        let mut role_bindings: Vec<(String, String, RoleRef, Vec<Subject>)> = Vec::new();
        let mut cluster_bindings: Vec<(String, RoleRef, Vec<Subject>)> = Vec::new();

        for obj in objects {
            let kind = obj.get("kind").and_then(Value::as_str).unwrap_or_default();
            let api_version = obj
                .get("apiVersion")
                .and_then(Value::as_str)
                .unwrap_or(API_VERSION);
            if api_version.split('/').next() != Some(GROUP) {
                continue;
            }
            match kind {
                "Role" => {
                    let Some(role) = decode::<Role>(kind, obj, &mut problems) else {
                        continue;
                    };
                    let Some(key) = names(kind, &role.metadata, true, &mut problems) else {
                        continue;
                    };
                    *counts.entry("Role").or_default() += 1;
                    roles.insert((key.1, key.0), role.rules.unwrap_or_default());
                }
                "ClusterRole" => {
                    let Some(role) = decode::<ClusterRole>(kind, obj, &mut problems) else {
                        continue;
                    };
                    let Some((name, _)) = names(kind, &role.metadata, false, &mut problems) else {
                        continue;
                    };
                    *counts.entry("ClusterRole").or_default() += 1;
                    let selectors = role.aggregation_rule.map(|rule| {
                        let mut selectors = Vec::new();
                        for (index, sel) in rule
                            .cluster_role_selectors
                            .unwrap_or_default()
                            .iter()
                            .enumerate()
                        {
                            match LabelSelector::from_label_selector(sel) {
                                Ok(s) => selectors.push(s),
                                Err(source) => problems.push(PolicyError::Selector {
                                    role: name.clone(),
                                    index,
                                    source,
                                }),
                            }
                        }
                        selectors
                    });
                    cluster_roles.push(ParsedClusterRole {
                        labels: role.metadata.labels.unwrap_or_default(),
                        name,
                        rules: role.rules.unwrap_or_default(),
                        selectors,
                    });
                }
                "RoleBinding" => {
                    let Some(b) = decode::<RoleBinding>(kind, obj, &mut problems) else {
                        continue;
                    };
                    let Some((name, ns)) = names(kind, &b.metadata, true, &mut problems) else {
                        continue;
                    };
                    *counts.entry("RoleBinding").or_default() += 1;
                    role_bindings.push((name, ns, b.role_ref, b.subjects.unwrap_or_default()));
                }
                "ClusterRoleBinding" => {
                    let Some(b) = decode::<ClusterRoleBinding>(kind, obj, &mut problems) else {
                        continue;
                    };
                    let Some((name, _)) = names(kind, &b.metadata, false, &mut problems) else {
                        continue;
                    };
                    *counts.entry("ClusterRoleBinding").or_default() += 1;
                    cluster_bindings.push((name, b.role_ref, b.subjects.unwrap_or_default()));
                }
                _ => {}
            }
        }

        let cluster_rules = aggregate(&cluster_roles);
        let role_rules: HashMap<(String, String), Rules> = roles
            .into_iter()
            .map(|(key, rules)| (key, rules.into_iter().map(Rule::new).collect()))
            .collect();

        let mut policy = Policy {
            counts,
            ..Policy::default()
        };
        for (name, role_ref, subjects) in cluster_bindings {
            // Only a ClusterRole can be granted cluster-wide: upstream looks a Role up in
            // the binding's namespace, and a ClusterRoleBinding has none.
            let rules = match role_ref.kind.as_str() {
                "ClusterRole" => cluster_rules.get(&role_ref.name).cloned(),
                "Role" => None,
                other => {
                    problems.push(PolicyError::RoleRefKind {
                        binding: format!("ClusterRoleBinding {name:?}"),
                        kind: other.to_owned(),
                    });
                    None
                }
            };
            if let Some(rules) = rules {
                policy.cluster_bindings.add(Binding {
                    name,
                    namespace: String::new(),
                    role_ref,
                    subjects,
                    rules,
                });
            }
        }
        for (name, namespace, role_ref, subjects) in role_bindings {
            let rules = match role_ref.kind.as_str() {
                "ClusterRole" => cluster_rules.get(&role_ref.name).cloned(),
                "Role" => role_rules
                    .get(&(namespace.clone(), role_ref.name.clone()))
                    .cloned(),
                other => {
                    problems.push(PolicyError::RoleRefKind {
                        binding: format!("RoleBinding {:?}", format!("{name}/{namespace}")),
                        kind: other.to_owned(),
                    });
                    None
                }
            };
            if let Some(rules) = rules {
                policy
                    .role_bindings
                    .entry(namespace.clone())
                    .or_default()
                    .add(Binding {
                        name,
                        namespace,
                        role_ref,
                        subjects,
                        rules,
                    });
            }
        }
        for problem in &problems {
            tracing::warn!(error = %problem, "RBAC object skipped");
        }
        policy.problems = problems;
        policy
    }

    /// Why objects given to [`Policy::from_objects`] were skipped or only partly used.
    pub fn problems(&self) -> &[PolicyError] {
        &self.problems
    }

    /// How many objects of each RBAC kind were read.
    pub fn counts(&self) -> &BTreeMap<&'static str, usize> {
        &self.counts
    }

    /// Upstream `VisitRulesFor`: every rule granted to `user` in `namespace` (cluster-wide
    /// grants first, then the namespace's RoleBindings; `""` means cluster-wide only), with
    /// the binding and subject that grant it, until `visit` returns `true`.
    fn visit<'a>(
        &'a self,
        user: &UserInfo,
        namespace: &str,
        mut visit: impl FnMut(&'a Binding, &'a Subject, &'a Rule) -> bool,
    ) {
        let namespaced = if namespace.is_empty() {
            None
        } else {
            self.role_bindings.get(namespace)
        };
        let bindings = self
            .cluster_bindings
            .for_user(user)
            .chain(namespaced.into_iter().flat_map(|idx| idx.for_user(user)));
        for binding in bindings {
            let Some(subject) = binding.subject_for(user) else {
                continue;
            };
            for rule in binding.rules.iter() {
                if visit(binding, subject, rule) {
                    return;
                }
            }
        }
    }

    /// kube-apiserver's RBAC decision on `attrs`: [`Decision::Allow`] naming the binding,
    /// role and subject that allow it (`RBAC: allowed by ClusterRoleBinding "x" of
    /// ClusterRole "y" to Group "z"`), otherwise [`Decision::NoOpinion`]. RBAC never denies.
    pub fn authorize(&self, attrs: &Attributes) -> Decision {
        let namespace = attrs.resource.as_ref().map_or("", |r| r.namespace.as_str());
        let mut allowed = None;
        self.visit(&attrs.user, namespace, |binding, subject, rule| {
            if rule.allows(attrs) {
                allowed = Some(describe(binding, subject));
                true
            } else {
                false
            }
        });
        match allowed {
            Some(source) => Decision::Allow(format!("RBAC: allowed by {source}")),
            None => Decision::NoOpinion,
        }
    }

    /// What `user` may do in `namespace` (`""`: cluster-wide grants only), as a
    /// SelfSubjectRulesReview lists it: each granted rule with resources becomes a
    /// [`ResourceRule`], each with non-resource URLs a [`NonResourceRule`], in grant order
    /// and without merging, as upstream does.
    pub fn rules_for(
        &self,
        user: &UserInfo,
        namespace: &str,
    ) -> (Vec<ResourceRule>, Vec<NonResourceRule>) {
        let some = |v: &[String]| (!v.is_empty()).then(|| v.to_vec());
        let mut resource_rules = Vec::new();
        let mut non_resource_rules = Vec::new();
        self.visit(user, namespace, |_, _, rule| {
            if !rule.resources.is_empty() {
                resource_rules.push(ResourceRule {
                    verbs: rule.source.verbs.clone(),
                    api_groups: some(&rule.api_groups),
                    resources: some(&rule.resources),
                    resource_names: some(&rule.resource_names),
                });
            }
            if !rule.non_resource_urls.is_empty() {
                non_resource_rules.push(NonResourceRule {
                    verbs: rule.source.verbs.clone(),
                    non_resource_urls: some(&rule.non_resource_urls),
                });
            }
            false
        });
        (resource_rules, non_resource_rules)
    }
}

/// Every ClusterRole's effective rules: its own, plus — for an aggregated role — those of
/// every ClusterRole its selectors match, transitively (an aggregated role selected by
/// another contributes what it aggregates, as upstream's aggregation controller converges
/// to), each rule once. A role never aggregates itself, and cycles end.
fn aggregate(roles: &[ParsedClusterRole]) -> HashMap<String, Rules> {
    let by_name: HashMap<&str, usize> = roles
        .iter()
        .enumerate()
        .map(|(i, r)| (r.name.as_str(), i))
        .collect();
    // Later duplicates of a name win, as a later write would.
    let effective = |start: usize| -> Vec<PolicyRule> {
        let mut rules: Vec<PolicyRule> = Vec::new();
        let mut push = |rule: &PolicyRule| {
            if !rules.contains(rule) {
                rules.push(rule.clone());
            }
        };
        roles[start].rules.iter().for_each(&mut push);
        let mut seen: HashSet<usize> = HashSet::from([start]);
        let mut queue = vec![start];
        while let Some(current) = queue.pop() {
            let Some(selectors) = &roles[current].selectors else {
                continue;
            };
            // Upstream visits each selector's matches sorted by name.
            let mut matched: Vec<usize> = roles
                .iter()
                .enumerate()
                .filter(|(i, r)| {
                    by_name.get(r.name.as_str()) == Some(i)
                        && !seen.contains(i)
                        && selectors.iter().any(|s| s.matches(&r.labels))
                })
                .map(|(i, _)| i)
                .collect();
            matched.sort_by(|a, b| roles[*a].name.cmp(&roles[*b].name));
            for i in matched {
                seen.insert(i);
                roles[i].rules.iter().for_each(&mut push);
                queue.insert(0, i);
            }
        }
        rules
    };
    by_name
        .iter()
        .map(|(name, i)| {
            let rules: Rules = effective(*i).into_iter().map(Rule::new).collect();
            ((*name).to_owned(), rules)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// The bootstrap policy
// ---------------------------------------------------------------------------------------

const AGGREGATE_TO_ADMIN: &str = "rbac.authorization.k8s.io/aggregate-to-admin";
const AGGREGATE_TO_EDIT: &str = "rbac.authorization.k8s.io/aggregate-to-edit";
const AGGREGATE_TO_VIEW: &str = "rbac.authorization.k8s.io/aggregate-to-view";

const READ: &[&str] = &["get", "list", "watch"];
const READ_WRITE: &[&str] = crate::api::registry::VERBS;
const WRITE: &[&str] = &["create", "delete", "deletecollection", "patch", "update"];
const EVENT_WRITE: &[&str] = &["create", "patch", "update"];

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> Value {
    json!({"apiGroups": groups, "resources": resources, "verbs": verbs})
}

fn named_rule(groups: &[&str], resources: &[&str], names: &[&str], verbs: &[&str]) -> Value {
    json!({"apiGroups": groups, "resources": resources, "resourceNames": names, "verbs": verbs})
}

fn url_rule(urls: &[&str], verbs: &[&str]) -> Value {
    json!({"nonResourceURLs": urls, "verbs": verbs})
}

fn bootstrap_meta(name: &str, extra_labels: &[&str]) -> Value {
    let mut labels = serde_json::Map::new();
    labels.insert(BOOTSTRAPPING_LABEL.into(), BOOTSTRAPPING_VALUE.into());
    for l in extra_labels {
        labels.insert((*l).into(), "true".into());
    }
    json!({
        "name": name,
        "labels": labels,
        "annotations": {AUTOUPDATE_ANNOTATION: "true"},
    })
}

fn cluster_role(name: &str, extra_labels: &[&str], rules: Vec<Value>) -> Value {
    json!({
        "apiVersion": API_VERSION,
        "kind": "ClusterRole",
        "metadata": bootstrap_meta(name, extra_labels),
        "rules": rules,
    })
}

/// A ClusterRole whose rules come from the ClusterRoles labelled `aggregate_label: "true"`.
fn aggregated_role(name: &str, extra_labels: &[&str], aggregate_label: &str) -> Value {
    let mut role = cluster_role(name, extra_labels, Vec::new());
    role["aggregationRule"] =
        json!({"clusterRoleSelectors": [{"matchLabels": {aggregate_label: "true"}}]});
    role
}

fn cluster_role_binding(name: &str, subjects: &[(&str, &str)]) -> Value {
    let subjects: Vec<Value> = subjects
        .iter()
        .map(|(kind, name)| json!({"apiGroup": GROUP, "kind": kind, "name": name}))
        .collect();
    json!({
        "apiVersion": API_VERSION,
        "kind": "ClusterRoleBinding",
        "metadata": bootstrap_meta(name, &[]),
        "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": name},
        "subjects": subjects,
    })
}

/// The bootstrap ClusterRoles and ClusterRoleBindings kube-apiserver creates at start
/// (`plugin/pkg/auth/authorizer/rbac/bootstrappolicy`), each annotated
/// `rbac.authorization.kubernetes.io/autoupdate: "true"` and labelled
/// `kubernetes.io/bootstrapping: rbac-defaults`. The rules are upstream's, including those
/// for kinds moor does not serve (they grant nothing here but keep `kubectl describe`
/// output and `can-i` answers the same as on a real cluster), plus moor's own: the
/// node-bootstrapper may post its token to [`NODE_CERTIFICATE_PATH`].
pub fn default_objects() -> Vec<Value> {
    let core = &[""];
    let mut objects = vec![
        cluster_role(
            "cluster-admin",
            &[],
            vec![rule(&[ALL], &[ALL], &[ALL]), url_rule(&[ALL], &[ALL])],
        ),
        aggregated_role("admin", &[], AGGREGATE_TO_ADMIN),
        aggregated_role("edit", &[AGGREGATE_TO_ADMIN], AGGREGATE_TO_EDIT),
        aggregated_role("view", &[AGGREGATE_TO_EDIT], AGGREGATE_TO_VIEW),
        cluster_role(
            "system:aggregate-to-admin",
            &[AGGREGATE_TO_ADMIN],
            vec![
                rule(
                    &["authorization.k8s.io"],
                    &["localsubjectaccessreviews"],
                    &["create"],
                ),
                rule(&[GROUP], &["rolebindings", "roles"], READ_WRITE),
            ],
        ),
        cluster_role(
            "system:aggregate-to-edit",
            &[AGGREGATE_TO_EDIT],
            vec![
                rule(
                    core,
                    &[
                        "pods/attach",
                        "pods/exec",
                        "pods/portforward",
                        "pods/proxy",
                        "secrets",
                        "services/proxy",
                    ],
                    READ,
                ),
                rule(core, &["serviceaccounts"], &["impersonate"]),
                rule(
                    core,
                    &[
                        "pods",
                        "pods/attach",
                        "pods/exec",
                        "pods/portforward",
                        "pods/proxy",
                    ],
                    WRITE,
                ),
                rule(core, &["pods/eviction"], &["create"]),
                rule(
                    core,
                    &[
                        "configmaps",
                        "events",
                        "persistentvolumeclaims",
                        "replicationcontrollers",
                        "replicationcontrollers/scale",
                        "secrets",
                        "serviceaccounts",
                        "services",
                        "services/proxy",
                    ],
                    WRITE,
                ),
                rule(core, &["serviceaccounts/token"], &["create"]),
                rule(
                    &["apps"],
                    &[
                        "daemonsets",
                        "deployments",
                        "deployments/rollback",
                        "deployments/scale",
                        "replicasets",
                        "replicasets/scale",
                        "statefulsets",
                        "statefulsets/scale",
                    ],
                    WRITE,
                ),
                rule(&["autoscaling"], &["horizontalpodautoscalers"], WRITE),
                rule(&["batch"], &["cronjobs", "jobs"], WRITE),
                rule(
                    &["extensions"],
                    &[
                        "daemonsets",
                        "deployments",
                        "deployments/rollback",
                        "deployments/scale",
                        "ingresses",
                        "networkpolicies",
                        "replicasets",
                        "replicasets/scale",
                        "replicationcontrollers/scale",
                    ],
                    WRITE,
                ),
                rule(&["policy"], &["poddisruptionbudgets"], WRITE),
                rule(
                    &["networking.k8s.io"],
                    &["ingresses", "networkpolicies"],
                    WRITE,
                ),
                rule(&["coordination.k8s.io"], &["leases"], READ_WRITE),
            ],
        ),
        cluster_role(
            "system:aggregate-to-view",
            &[AGGREGATE_TO_VIEW],
            vec![
                rule(
                    core,
                    &[
                        "configmaps",
                        "endpoints",
                        "persistentvolumeclaims",
                        "persistentvolumeclaims/status",
                        "pods",
                        "replicationcontrollers",
                        "replicationcontrollers/scale",
                        "serviceaccounts",
                        "services",
                        "services/status",
                    ],
                    READ,
                ),
                rule(
                    core,
                    &[
                        "bindings",
                        "events",
                        "limitranges",
                        "namespaces/status",
                        "pods/log",
                        "pods/status",
                        "replicationcontrollers/status",
                        "resourcequotas",
                        "resourcequotas/status",
                    ],
                    READ,
                ),
                rule(core, &["namespaces"], READ),
                rule(&["discovery.k8s.io"], &["endpointslices"], READ),
                rule(
                    &["apps"],
                    &[
                        "controllerrevisions",
                        "daemonsets",
                        "daemonsets/status",
                        "deployments",
                        "deployments/scale",
                        "deployments/status",
                        "replicasets",
                        "replicasets/scale",
                        "replicasets/status",
                        "statefulsets",
                        "statefulsets/scale",
                        "statefulsets/status",
                    ],
                    READ,
                ),
                rule(
                    &["autoscaling"],
                    &[
                        "horizontalpodautoscalers",
                        "horizontalpodautoscalers/status",
                    ],
                    READ,
                ),
                rule(
                    &["batch"],
                    &["cronjobs", "cronjobs/status", "jobs", "jobs/status"],
                    READ,
                ),
                rule(
                    &["extensions"],
                    &[
                        "daemonsets",
                        "daemonsets/status",
                        "deployments",
                        "deployments/scale",
                        "deployments/status",
                        "ingresses",
                        "ingresses/status",
                        "networkpolicies",
                        "replicasets",
                        "replicasets/scale",
                        "replicasets/status",
                        "replicationcontrollers/scale",
                    ],
                    READ,
                ),
                rule(
                    &["policy"],
                    &["poddisruptionbudgets", "poddisruptionbudgets/status"],
                    READ,
                ),
                rule(
                    &["networking.k8s.io"],
                    &["ingresses", "ingresses/status", "networkpolicies"],
                    READ,
                ),
            ],
        ),
        cluster_role(
            "system:discovery",
            &[],
            vec![url_rule(
                &[
                    "/api",
                    "/api/*",
                    "/apis",
                    "/apis/*",
                    "/healthz",
                    "/livez",
                    "/openapi",
                    "/openapi/*",
                    "/readyz",
                    "/version",
                    "/version/",
                ],
                &["get"],
            )],
        ),
        cluster_role(
            "system:basic-user",
            &[],
            vec![
                rule(
                    &["authorization.k8s.io"],
                    &["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                    &["create"],
                ),
                rule(
                    &["authentication.k8s.io"],
                    &["selfsubjectreviews"],
                    &["create"],
                ),
            ],
        ),
        cluster_role(
            "system:public-info-viewer",
            &[],
            vec![url_rule(
                &["/healthz", "/livez", "/readyz", "/version", "/version/"],
                &["get"],
            )],
        ),
        cluster_role(
            "system:node-bootstrapper",
            &[],
            vec![
                rule(
                    &["certificates.k8s.io"],
                    &["certificatesigningrequests"],
                    &["create", "get", "list", "watch"],
                ),
                // moor's join endpoint: a non-resource path, so the verb is the method.
                url_rule(&[NODE_CERTIFICATE_PATH], &["post"]),
            ],
        ),
        cluster_role(
            "system:kube-controller-manager",
            &[],
            vec![
                rule(&["", "events.k8s.io"], &["events"], EVENT_WRITE),
                rule(&["coordination.k8s.io"], &["leases"], &["create"]),
                named_rule(
                    &["coordination.k8s.io"],
                    &["leases"],
                    &["kube-controller-manager"],
                    &["get", "update"],
                ),
                rule(core, &["secrets", "serviceaccounts"], &["create"]),
                rule(core, &["secrets"], &["delete"]),
                rule(
                    core,
                    &["configmaps", "namespaces", "secrets", "serviceaccounts"],
                    &["get"],
                ),
                rule(core, &["secrets", "serviceaccounts"], &["update"]),
                rule(&["authentication.k8s.io"], &["tokenreviews"], &["create"]),
                rule(
                    &["authorization.k8s.io"],
                    &["subjectaccessreviews"],
                    &["create"],
                ),
                rule(&[ALL], &[ALL], &["list", "watch"]),
                rule(core, &["serviceaccounts/token"], &["create"]),
            ],
        ),
        cluster_role(
            "system:kube-scheduler",
            &[],
            vec![
                rule(&["", "events.k8s.io"], &["events"], EVENT_WRITE),
                rule(&["coordination.k8s.io"], &["leases"], &["create"]),
                named_rule(
                    &["coordination.k8s.io"],
                    &["leases"],
                    &["kube-scheduler"],
                    &["get", "update"],
                ),
                rule(core, &["nodes"], READ),
                rule(core, &["pods"], &["delete", "get", "list", "watch"]),
                rule(core, &["bindings", "pods/binding"], &["create"]),
                rule(core, &["pods/status"], &["patch", "update"]),
                rule(core, &["replicationcontrollers", "services"], READ),
                rule(&["apps", "extensions"], &["replicasets"], READ),
                rule(&["apps"], &["statefulsets"], READ),
                rule(&["policy"], &["poddisruptionbudgets"], READ),
                rule(core, &["persistentvolumeclaims", "persistentvolumes"], READ),
                rule(&["authentication.k8s.io"], &["tokenreviews"], &["create"]),
                rule(
                    &["authorization.k8s.io"],
                    &["subjectaccessreviews"],
                    &["create"],
                ),
                rule(&["storage.k8s.io"], &["csinodes"], READ),
                rule(core, &["namespaces"], READ),
                rule(&["storage.k8s.io"], &["csidrivers"], READ),
                rule(&["storage.k8s.io"], &["csistoragecapacities"], READ),
            ],
        ),
        cluster_role(
            "system:node-proxier",
            &[],
            vec![
                rule(core, &["endpoints", "services"], &["list", "watch"]),
                rule(core, &["nodes"], READ),
                rule(&["", "events.k8s.io"], &["events"], EVENT_WRITE),
                rule(
                    &["discovery.k8s.io"],
                    &["endpointslices"],
                    &["list", "watch"],
                ),
            ],
        ),
    ];
    objects.extend([
        cluster_role_binding("cluster-admin", &[("Group", GROUP_MASTERS)]),
        cluster_role_binding("system:discovery", &[("Group", GROUP_AUTHENTICATED)]),
        cluster_role_binding("system:basic-user", &[("Group", GROUP_AUTHENTICATED)]),
        cluster_role_binding(
            "system:public-info-viewer",
            &[
                ("Group", GROUP_AUTHENTICATED),
                ("Group", GROUP_UNAUTHENTICATED),
            ],
        ),
        cluster_role_binding(
            "system:node-bootstrapper",
            &[("Group", GROUP_BOOTSTRAPPERS)],
        ),
        cluster_role_binding(
            "system:kube-controller-manager",
            &[("User", "system:kube-controller-manager")],
        ),
        cluster_role_binding(
            "system:kube-scheduler",
            &[("User", "system:kube-scheduler")],
        ),
        cluster_role_binding("system:node-proxier", &[("User", "system:kube-proxy")]),
    ]);
    objects
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::ResourceAttributes;

    fn user(name: &str, groups: &[&str]) -> UserInfo {
        UserInfo::new(name, groups.iter().map(|g| (*g).to_owned()))
    }

    fn res(user: &UserInfo, verb: &str, group: &str, resource: &str, ns: &str) -> Attributes {
        let (resource, subresource) = resource.split_once('/').unwrap_or((resource, ""));
        Attributes {
            user: user.clone(),
            verb: verb.to_owned(),
            resource: Some(ResourceAttributes {
                group: group.to_owned(),
                resource: resource.to_owned(),
                subresource: subresource.to_owned(),
                namespace: ns.to_owned(),
                name: String::new(),
            }),
            path: String::new(),
        }
    }

    fn named(mut attrs: Attributes, name: &str) -> Attributes {
        if let Some(r) = attrs.resource.as_mut() {
            r.name = name.to_owned();
        }
        attrs
    }

    fn url(user: &UserInfo, verb: &str, path: &str) -> Attributes {
        Attributes {
            user: user.clone(),
            verb: verb.to_owned(),
            resource: None,
            path: path.to_owned(),
        }
    }

    fn role(ns: &str, name: &str, rules: Value) -> Value {
        json!({"apiVersion": API_VERSION, "kind": "Role",
               "metadata": {"name": name, "namespace": ns}, "rules": rules})
    }

    fn cluster_role(name: &str, rules: Value) -> Value {
        json!({"apiVersion": API_VERSION, "kind": "ClusterRole",
               "metadata": {"name": name}, "rules": rules})
    }

    fn subject(kind: &str, name: &str) -> Value {
        match kind {
            "ServiceAccount" => json!({"kind": kind, "name": name}),
            _ => json!({"kind": kind, "name": name, "apiGroup": GROUP}),
        }
    }

    fn binding(ns: &str, name: &str, role_kind: &str, role: &str, subjects: Value) -> Value {
        json!({"apiVersion": API_VERSION, "kind": "RoleBinding",
               "metadata": {"name": name, "namespace": ns},
               "roleRef": {"apiGroup": GROUP, "kind": role_kind, "name": role},
               "subjects": subjects})
    }

    fn cluster_binding(name: &str, role: &str, subjects: Value) -> Value {
        json!({"apiVersion": API_VERSION, "kind": "ClusterRoleBinding",
               "metadata": {"name": name},
               "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": role},
               "subjects": subjects})
    }

    fn policy(objects: &[Value]) -> Policy {
        Policy::from_objects(objects)
    }

    /// A policy granting `rules` (a ClusterRole) to user `u` cluster-wide.
    fn granting(rules: Value) -> (Policy, UserInfo) {
        let p = policy(&[
            cluster_role("r", rules),
            cluster_binding("b", "r", json!([subject("User", "u")])),
        ]);
        (p, user("u", &[]))
    }

    fn allowed(p: &Policy, attrs: &Attributes) -> bool {
        p.authorize(attrs).allowed()
    }

    #[test]
    fn verbs_and_groups_match_exactly_or_by_wildcard() {
        let (p, u) = granting(
            json!([{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list"]}]),
        );
        assert!(allowed(&p, &res(&u, "get", "apps", "deployments", "ns")));
        assert!(allowed(&p, &res(&u, "list", "apps", "deployments", "")));
        assert!(!allowed(
            &p,
            &res(&u, "delete", "apps", "deployments", "ns")
        ));
        assert!(!allowed(&p, &res(&u, "get", "", "deployments", "ns")));
        assert!(!allowed(&p, &res(&u, "get", "apps", "replicasets", "ns")));

        let (p, u) = granting(json!([{"apiGroups": ["*"], "resources": ["pods"], "verbs": ["*"]}]));
        assert!(allowed(&p, &res(&u, "deletecollection", "", "pods", "x")));
        assert!(allowed(&p, &res(&u, "bind", "anything.io", "pods", "x")));
        assert!(!allowed(&p, &res(&u, "get", "", "secrets", "x")));
    }

    #[test]
    fn resources_match_subresources_only_when_named() {
        let (p, u) = granting(json!([
            {"apiGroups": [""], "resources": ["pods", "deployments/scale", "*/status"], "verbs": ["get"]}
        ]));
        assert!(allowed(&p, &res(&u, "get", "", "pods", "ns")));
        // A plain resource does not grant its subresources.
        assert!(!allowed(&p, &res(&u, "get", "", "pods/log", "ns")));
        assert!(allowed(&p, &res(&u, "get", "", "deployments/scale", "ns")));
        assert!(!allowed(&p, &res(&u, "get", "", "deployments", "ns")));
        // `*/status` is any resource's status, and nothing else.
        assert!(allowed(&p, &res(&u, "get", "", "nodes/status", "")));
        assert!(allowed(&p, &res(&u, "get", "", "services/status", "ns")));
        assert!(!allowed(&p, &res(&u, "get", "", "services", "ns")));
        assert!(!allowed(&p, &res(&u, "get", "", "services/statusx", "ns")));

        let (p, u) = granting(json!([{"apiGroups": [""], "resources": ["*"], "verbs": ["get"]}]));
        assert!(allowed(&p, &res(&u, "get", "", "pods/log", "ns")));
        assert!(allowed(&p, &res(&u, "get", "", "secrets", "ns")));
    }

    #[test]
    fn resource_names_limit_to_requests_naming_them() {
        let (p, u) = granting(json!([{"apiGroups": [""], "resources": ["configmaps"],
            "resourceNames": ["a", "b"], "verbs": ["get", "list", "update", "create"]}]));
        assert!(allowed(
            &p,
            &named(res(&u, "get", "", "configmaps", "ns"), "a")
        ));
        assert!(allowed(
            &p,
            &named(res(&u, "update", "", "configmaps", "ns"), "b")
        ));
        assert!(!allowed(
            &p,
            &named(res(&u, "get", "", "configmaps", "ns"), "c")
        ));
        // Requests without a name: list and create are not granted.
        assert!(!allowed(&p, &res(&u, "list", "", "configmaps", "ns")));
        assert!(!allowed(&p, &res(&u, "create", "", "configmaps", "ns")));
        // Without resourceNames every name is granted.
        let (p, u) =
            granting(json!([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]));
        assert!(allowed(
            &p,
            &named(res(&u, "get", "", "configmaps", "ns"), "c")
        ));
    }

    #[test]
    fn non_resource_urls_match_exactly_or_by_prefix() {
        let (p, u) = granting(json!([
            {"nonResourceURLs": ["/healthz", "/apis/*", "/logs*"], "verbs": ["get"]},
            {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}
        ]));
        assert!(allowed(&p, &url(&u, "get", "/healthz")));
        assert!(!allowed(&p, &url(&u, "get", "/healthz/ping")));
        assert!(!allowed(&p, &url(&u, "post", "/healthz")));
        assert!(allowed(&p, &url(&u, "get", "/apis/apps/v1")));
        assert!(allowed(&p, &url(&u, "get", "/apis/")));
        assert!(!allowed(&p, &url(&u, "get", "/apis")));
        assert!(allowed(&p, &url(&u, "get", "/logsfoo")));
        // A resource wildcard rule does not cover non-resource paths.
        assert!(!allowed(&p, &url(&u, "get", "/metrics")));

        let (p, u) = granting(json!([{"nonResourceURLs": ["*"], "verbs": ["get"]}]));
        assert!(allowed(&p, &url(&u, "get", "/anything/at/all")));
        // A non-resource rule does not cover resources.
        assert!(!allowed(&p, &res(&u, "get", "", "pods", "ns")));
    }

    #[test]
    fn cluster_role_bindings_grant_everywhere_role_bindings_in_their_namespace() {
        let pods = json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]);
        let p = policy(&[
            cluster_role("reader", pods.clone()),
            role("team", "local", pods),
            cluster_binding("all", "reader", json!([subject("User", "global")])),
            binding(
                "team",
                "rb-cr",
                "ClusterRole",
                "reader",
                json!([subject("User", "teamer")]),
            ),
            binding(
                "team",
                "rb-r",
                "Role",
                "local",
                json!([subject("User", "local")]),
            ),
        ]);
        let global = user("global", &[]);
        assert!(allowed(&p, &res(&global, "get", "", "pods", "any")));
        assert!(allowed(&p, &res(&global, "list", "", "pods", "")));

        for name in ["teamer", "local"] {
            let u = user(name, &[]);
            assert!(allowed(&p, &res(&u, "get", "", "pods", "team")), "{name}");
            assert!(!allowed(&p, &res(&u, "get", "", "pods", "other")), "{name}");
            // A list across namespaces needs a cluster-wide grant.
            assert!(!allowed(&p, &res(&u, "list", "", "pods", "")), "{name}");
            assert!(
                !allowed(&p, &res(&u, "delete", "", "pods", "team")),
                "{name}"
            );
        }
    }

    #[test]
    fn reasons_name_binding_role_and_subject_like_upstream() {
        let p = policy(&[
            cluster_role(
                "r",
                json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]),
            ),
            cluster_binding(
                "crb",
                "r",
                json!([subject("User", "x"), subject("Group", "g")]),
            ),
            binding(
                "ns1",
                "rb",
                "ClusterRole",
                "r",
                json!([subject("ServiceAccount", "sa")]),
            ),
        ]);
        assert_eq!(
            p.authorize(&res(&user("u", &["g"]), "get", "", "pods", "ns1")),
            Decision::Allow(
                r#"RBAC: allowed by ClusterRoleBinding "crb" of ClusterRole "r" to Group "g""#
                    .to_owned()
            )
        );
        assert_eq!(
            p.authorize(&res(
                &user("system:serviceaccount:ns1:sa", &[]),
                "get",
                "",
                "pods",
                "ns1"
            )),
            Decision::Allow(
                r#"RBAC: allowed by RoleBinding "rb/ns1" of ClusterRole "r" to ServiceAccount "sa/ns1""#
                    .to_owned()
            )
        );
        assert_eq!(
            p.authorize(&res(&user("u", &[]), "get", "", "pods", "ns1")),
            Decision::NoOpinion
        );
    }

    #[test]
    fn missing_roles_and_wrong_role_kinds_grant_nothing() {
        let all = json!([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]);
        let p = policy(&[
            role("a", "r", all.clone()),
            cluster_binding("to-missing", "nope", json!([subject("User", "u")])),
            // A ClusterRoleBinding naming a Role: upstream finds no Role without a namespace.
            json!({"apiVersion": API_VERSION, "kind": "ClusterRoleBinding", "metadata": {"name": "to-role"},
                   "roleRef": {"apiGroup": GROUP, "kind": "Role", "name": "r"},
                   "subjects": [subject("User", "u")]}),
            // A RoleBinding naming a Role of another namespace.
            binding("b", "cross", "Role", "r", json!([subject("User", "u")])),
            binding("a", "odd", "Thing", "r", json!([subject("User", "u")])),
        ]);
        let u = user("u", &[]);
        for ns in ["a", "b", ""] {
            assert_eq!(
                p.authorize(&res(&u, "get", "", "pods", ns)),
                Decision::NoOpinion
            );
        }
        let problems: Vec<String> = p.problems().iter().map(ToString::to_string).collect();
        assert_eq!(
            problems,
            [r#"RoleBinding "odd/a" refers to a role of kind "Thing" and grants nothing"#]
        );
    }

    #[test]
    fn service_account_subjects() {
        let p = policy(&[
            cluster_role(
                "r",
                json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]),
            ),
            // With a namespace: that account only, in the binding's namespace.
            binding(
                "ns1",
                "explicit",
                "ClusterRole",
                "r",
                json!([{"kind": "ServiceAccount", "name": "build", "namespace": "ci"}]),
            ),
            // Without: the binding's namespace.
            binding(
                "ns2",
                "implicit",
                "ClusterRole",
                "r",
                json!([subject("ServiceAccount", "app")]),
            ),
            // Without, in a ClusterRoleBinding: nobody.
            cluster_binding("nobody", "r", json!([subject("ServiceAccount", "app")])),
            cluster_binding(
                "ci-everywhere",
                "r",
                json!([{"kind": "ServiceAccount", "name": "deployer", "namespace": "ci"}]),
            ),
        ]);
        let build = user(
            "system:serviceaccount:ci:build",
            &["system:serviceaccounts"],
        );
        assert!(allowed(&p, &res(&build, "get", "", "pods", "ns1")));
        assert!(!allowed(&p, &res(&build, "get", "", "pods", "ci")));
        let app = user("system:serviceaccount:ns2:app", &[]);
        assert!(allowed(&p, &res(&app, "get", "", "pods", "ns2")));
        assert!(!allowed(&p, &res(&app, "get", "", "pods", "ns3")));
        let other_app = user("system:serviceaccount:ns3:app", &[]);
        assert!(!allowed(&p, &res(&other_app, "get", "", "pods", "ns3")));
        assert!(!allowed(&p, &res(&other_app, "get", "", "pods", "ns2")));
        let deployer = user("system:serviceaccount:ci:deployer", &[]);
        assert!(allowed(&p, &res(&deployer, "get", "", "pods", "anywhere")));
        // The user name is what counts, not a look-alike.
        let fake = user("deployer", &[]);
        assert!(!allowed(&p, &res(&fake, "get", "", "pods", "anywhere")));
    }

    #[test]
    fn groups_and_users() {
        let p = policy(&[
            cluster_role(
                "r",
                json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]),
            ),
            cluster_binding(
                "b",
                "r",
                json!([subject("Group", "devs"), subject("User", "alice")]),
            ),
        ]);
        assert!(allowed(
            &p,
            &res(&user("bob", &["devs"]), "get", "", "pods", "x")
        ));
        assert!(allowed(
            &p,
            &res(&user("alice", &[]), "get", "", "pods", "x")
        ));
        assert!(!allowed(
            &p,
            &res(&user("bob", &["ops"]), "get", "", "pods", "x")
        ));
        // A user named like the group is not in it.
        assert!(!allowed(
            &p,
            &res(&user("devs", &[]), "get", "", "pods", "x")
        ));
    }

    fn labelled(name: &str, labels: Value, aggregation: Option<Value>, rules: Value) -> Value {
        let mut r = json!({"apiVersion": API_VERSION, "kind": "ClusterRole",
            "metadata": {"name": name, "labels": labels}, "rules": rules});
        if let Some(selectors) = aggregation {
            r["aggregationRule"] = json!({"clusterRoleSelectors": selectors});
        }
        r
    }

    #[test]
    fn aggregation_collects_matching_roles_transitively() {
        let verb = |v: &str| json!([{"apiGroups": [""], "resources": ["pods"], "verbs": [v]}]);
        let p = policy(&[
            labelled(
                "top",
                json!({}),
                Some(json!([{"matchLabels": {"to-top": "true"}}])),
                verb("own"),
            ),
            labelled(
                "middle",
                json!({"to-top": "true"}),
                Some(
                    json!([{"matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}]}]),
                ),
                json!([]),
            ),
            labelled("leaf-a", json!({"tier": "a"}), None, verb("get")),
            labelled("leaf-c", json!({"tier": "c"}), None, verb("delete")),
            labelled("direct", json!({"to-top": "true"}), None, verb("list")),
            cluster_binding("b-top", "top", json!([subject("User", "t")])),
            cluster_binding("b-mid", "middle", json!([subject("User", "m")])),
        ]);
        let t = user("t", &[]);
        for verb in ["own", "get", "list"] {
            assert!(allowed(&p, &res(&t, verb, "", "pods", "x")), "{verb}");
        }
        assert!(!allowed(&p, &res(&t, "delete", "", "pods", "x")));
        let m = user("m", &[]);
        assert!(allowed(&p, &res(&m, "get", "", "pods", "x")));
        assert!(!allowed(&p, &res(&m, "list", "", "pods", "x")));
        assert!(!allowed(&p, &res(&m, "own", "", "pods", "x")));
    }

    #[test]
    fn aggregation_cycles_end_and_bad_selectors_select_nothing() {
        let verb = |v: &str| json!([{"apiGroups": [""], "resources": ["pods"], "verbs": [v]}]);
        let p = policy(&[
            labelled(
                "a",
                json!({"ring": "x"}),
                Some(json!([{"matchLabels": {"ring": "x"}}])),
                verb("a"),
            ),
            labelled(
                "b",
                json!({"ring": "x"}),
                Some(json!([{"matchLabels": {"ring": "x"}}])),
                verb("b"),
            ),
            labelled(
                "bad",
                json!({}),
                Some(json!([{"matchExpressions": [{"key": "ring", "operator": "Near"}]}])),
                verb("bad"),
            ),
            cluster_binding("ba", "a", json!([subject("User", "u")])),
            cluster_binding("bb", "bad", json!([subject("User", "v")])),
        ]);
        let u = user("u", &[]);
        assert!(allowed(&p, &res(&u, "a", "", "pods", "x")));
        assert!(allowed(&p, &res(&u, "b", "", "pods", "x")));
        let v = user("v", &[]);
        assert!(allowed(&p, &res(&v, "bad", "", "pods", "x")));
        assert!(!allowed(&p, &res(&v, "a", "", "pods", "x")));
        assert!(matches!(
            p.problems(),
            [PolicyError::Selector { role, index: 0, .. }] if role == "bad"
        ));
    }

    #[test]
    fn malformed_objects_are_skipped_with_a_reason() {
        let p = policy(&[
            json!({"apiVersion": API_VERSION, "kind": "ClusterRole", "metadata": {"name": "bad"}, "rules": "all"}),
            json!({"apiVersion": API_VERSION, "kind": "ClusterRoleBinding", "metadata": {"name": "nor"},
                   "subjects": [subject("User", "u")]}),
            json!({"apiVersion": API_VERSION, "kind": "RoleBinding", "metadata": {"name": "nons"},
                   "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": "good"},
                   "subjects": [subject("User", "u")]}),
            json!({"apiVersion": API_VERSION, "kind": "Role", "metadata": {"namespace": "x"}}),
            json!({"apiVersion": "v1", "kind": "Role", "metadata": {"name": "not-rbac", "namespace": "x"}}),
            json!("not an object"),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}),
            cluster_role(
                "good",
                json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]),
            ),
            cluster_binding("ok", "good", json!([subject("User", "u")])),
        ]);
        assert!(allowed(&p, &res(&user("u", &[]), "get", "", "pods", "x")));
        let problems: Vec<String> = p.problems().iter().map(ToString::to_string).collect();
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(
            problems[0].starts_with("ClusterRole \"bad\" is malformed"),
            "{problems:?}"
        );
        assert_eq!(
            problems[1],
            "RoleBinding without metadata.namespace is ignored"
        );
        assert_eq!(problems[2], "Role without metadata.name is ignored");
        // A binding without a roleRef reads as one naming no kind.
        assert_eq!(
            problems[3],
            r#"ClusterRoleBinding "nor" refers to a role of kind "" and grants nothing"#
        );
        assert_eq!(p.counts().get("ClusterRole"), Some(&1));
        assert_eq!(p.counts().get("ClusterRoleBinding"), Some(&2));
    }

    #[test]
    fn rules_for_lists_what_applies_in_a_namespace() {
        let p = policy(&[
            cluster_role(
                "r",
                json!([
                    {"apiGroups": [""], "resources": ["pods"], "resourceNames": ["p"], "verbs": ["get"]},
                    {"nonResourceURLs": ["/healthz"], "verbs": ["get"]}
                ]),
            ),
            role(
                "ns1",
                "local",
                json!([{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["list"]}]),
            ),
            cluster_binding("crb", "r", json!([subject("Group", "g")])),
            binding("ns1", "rb", "Role", "local", json!([subject("User", "u")])),
        ]);
        let u = user("u", &["g"]);
        let (resources, urls) = p.rules_for(&u, "ns1");
        assert_eq!(resources.len(), 2);
        assert_eq!(resources[0].resource_names, Some(vec!["p".to_owned()]));
        assert_eq!(resources[1].api_groups, Some(vec!["apps".to_owned()]));
        assert_eq!(resources[1].resource_names, None);
        assert_eq!(urls.len(), 1);
        assert_eq!(urls[0].non_resource_urls, Some(vec!["/healthz".to_owned()]));
        let (resources, _) = p.rules_for(&u, "ns2");
        assert_eq!(resources.len(), 1);
        let (resources, urls) = p.rules_for(&user("nobody", &[]), "ns1");
        assert!(resources.is_empty() && urls.is_empty());
    }

    fn defaults() -> Policy {
        let objects = default_objects();
        let p = Policy::from_objects(&objects);
        assert!(p.problems().is_empty(), "{:?}", p.problems());
        p
    }

    #[test]
    fn default_policy_masters_may_do_anything() {
        let p = defaults();
        let admin = user("admin", &[GROUP_MASTERS]);
        assert!(allowed(
            &p,
            &res(&admin, "delete", "", "secrets", "kube-system")
        ));
        assert!(allowed(
            &p,
            &res(&admin, "deletecollection", "apps", "deployments", "")
        ));
        assert!(allowed(
            &p,
            &named(res(&admin, "update", "", "nodes/status", ""), "n1")
        ));
        assert!(allowed(&p, &url(&admin, "post", "/anything")));
        assert_eq!(
            p.authorize(&res(&admin, "get", "", "pods", "x")),
            Decision::Allow(
                r#"RBAC: allowed by ClusterRoleBinding "cluster-admin" of ClusterRole "cluster-admin" to Group "system:masters""#
                    .to_owned()
            )
        );
    }

    #[test]
    fn default_policy_view_edit_admin() {
        let mut objects = default_objects();
        for (who, role) in [("viewer", "view"), ("editor", "edit"), ("owner", "admin")] {
            objects.push(binding(
                "team",
                who,
                "ClusterRole",
                role,
                json!([subject("User", who)]),
            ));
        }
        let p = Policy::from_objects(&objects);
        let viewer = user("viewer", &[]);
        for verb in ["get", "list", "watch"] {
            assert!(
                allowed(&p, &res(&viewer, verb, "", "pods", "team")),
                "{verb}"
            );
        }
        assert!(allowed(&p, &res(&viewer, "get", "", "pods/log", "team")));
        assert!(allowed(
            &p,
            &res(&viewer, "list", "apps", "deployments", "team")
        ));
        assert!(allowed(
            &p,
            &res(
                &viewer,
                "list",
                "discovery.k8s.io",
                "endpointslices",
                "team"
            )
        ));
        // Upstream's view leaves secrets out.
        assert!(!allowed(&p, &res(&viewer, "get", "", "secrets", "team")));
        assert!(!allowed(&p, &res(&viewer, "list", "", "secrets", "team")));
        assert!(!allowed(&p, &res(&viewer, "create", "", "pods", "team")));
        assert!(!allowed(&p, &res(&viewer, "get", "", "pods", "elsewhere")));

        let editor = user("editor", &[]);
        assert!(allowed(&p, &res(&editor, "get", "", "secrets", "team")));
        assert!(allowed(
            &p,
            &res(&editor, "create", "apps", "deployments", "team")
        ));
        assert!(allowed(
            &p,
            &res(&editor, "update", "apps", "deployments/scale", "team")
        ));
        // Edit reads what view reads (aggregated through view).
        assert!(allowed(&p, &res(&editor, "list", "", "pods", "team")));
        assert!(!allowed(
            &p,
            &res(&editor, "create", GROUP, "rolebindings", "team")
        ));

        let owner = user("owner", &[]);
        assert!(allowed(
            &p,
            &res(&owner, "create", GROUP, "rolebindings", "team")
        ));
        // Admin holds edit's and view's rules (aggregated twice over).
        assert!(allowed(&p, &res(&owner, "delete", "", "secrets", "team")));
        assert!(allowed(&p, &res(&owner, "watch", "", "pods", "team")));
    }

    #[test]
    fn default_policy_everyone_and_system_users() {
        let p = defaults();
        let someone = user("someone", &[]);
        assert!(!allowed(&p, &res(&someone, "list", "", "pods", "default")));
        assert!(!allowed(&p, &res(&someone, "list", "", "pods", "")));
        assert!(allowed(
            &p,
            &res(
                &someone,
                "create",
                "authorization.k8s.io",
                "selfsubjectaccessreviews",
                ""
            )
        ));
        assert!(allowed(
            &p,
            &res(
                &someone,
                "create",
                "authorization.k8s.io",
                "selfsubjectrulesreviews",
                ""
            )
        ));
        assert!(allowed(&p, &url(&someone, "get", "/apis/apps/v1")));
        assert!(allowed(&p, &url(&someone, "get", "/version")));
        assert!(!allowed(&p, &url(&someone, "get", "/metrics")));

        let anonymous = UserInfo::anonymous();
        assert!(allowed(&p, &url(&anonymous, "get", "/version/")));
        assert!(allowed(&p, &url(&anonymous, "get", "/readyz")));
        assert!(!allowed(&p, &url(&anonymous, "get", "/api")));
        assert!(!allowed(
            &p,
            &res(
                &anonymous,
                "create",
                "authorization.k8s.io",
                "selfsubjectaccessreviews",
                ""
            )
        ));

        let bootstrap = user("system:bootstrap:abcdef", &[GROUP_BOOTSTRAPPERS]);
        assert!(allowed(&p, &url(&bootstrap, "post", NODE_CERTIFICATE_PATH)));
        assert!(!allowed(&p, &url(&bootstrap, "get", NODE_CERTIFICATE_PATH)));
        assert!(!allowed(&p, &url(&someone, "post", NODE_CERTIFICATE_PATH)));

        let proxy = user("system:kube-proxy", &[]);
        for (group, resource) in [
            ("", "services"),
            ("", "endpoints"),
            ("discovery.k8s.io", "endpointslices"),
            ("", "nodes"),
        ] {
            assert!(
                allowed(&p, &res(&proxy, "watch", group, resource, "")),
                "{resource}"
            );
        }
        assert!(allowed(&p, &res(&proxy, "create", "", "events", "default")));
        assert!(!allowed(&p, &res(&proxy, "list", "", "pods", "")));

        let scheduler = user("system:kube-scheduler", &[]);
        assert!(allowed(
            &p,
            &named(
                res(&scheduler, "create", "", "pods/binding", "default"),
                "web"
            )
        ));
        assert!(allowed(
            &p,
            &named(
                res(
                    &scheduler,
                    "update",
                    "coordination.k8s.io",
                    "leases",
                    "kube-system"
                ),
                "kube-scheduler"
            )
        ));
        assert!(!allowed(
            &p,
            &named(
                res(
                    &scheduler,
                    "update",
                    "coordination.k8s.io",
                    "leases",
                    "kube-system"
                ),
                "other"
            )
        ));

        let kcm = user("system:kube-controller-manager", &[]);
        assert!(allowed(&p, &res(&kcm, "watch", "apps", "replicasets", "")));
        assert!(!allowed(&p, &res(&kcm, "create", "", "pods", "default")));
    }

    #[test]
    fn default_objects_are_labelled_annotated_and_valid() {
        let objects = default_objects();
        let mut names = HashSet::new();
        for obj in &objects {
            let name = obj["metadata"]["name"].as_str().unwrap();
            let kind = obj["kind"].as_str().unwrap();
            assert!(names.insert((kind.to_owned(), name)), "{name} twice");
            assert_eq!(
                obj["metadata"]["labels"][BOOTSTRAPPING_LABEL],
                "rbac-defaults"
            );
            assert_eq!(
                obj["metadata"]["annotations"][AUTOUPDATE_ANNOTATION],
                "true"
            );
            let mut defaulted = obj.clone();
            crate::api::defaults::apply_defaults(GROUP, kind, &mut defaulted);
            assert_eq!(&defaulted, obj, "{name} is not in its defaulted form");
            let errors = crate::api::validation::validate(GROUP, kind, obj, None);
            assert!(errors.is_empty(), "{name}: {errors:?}");
        }
        for role in [
            "cluster-admin",
            "admin",
            "edit",
            "view",
            "system:discovery",
            "system:basic-user",
            "system:public-info-viewer",
            "system:node-bootstrapper",
            "system:kube-controller-manager",
            "system:kube-scheduler",
            "system:node-proxier",
        ] {
            assert!(names.contains(&("ClusterRole".to_owned(), role)), "{role}");
        }
        assert_eq!(
            objects
                .iter()
                .filter(|o| o["kind"] == "ClusterRoleBinding")
                .count(),
            8
        );
    }
}
