//! Server-side printing: the `meta.k8s.io/v1` Table that `kubectl get` asks for with
//! `Accept: application/json;as=Table;v=v1;g=meta.k8s.io`.
//!
//! kubectl prints whatever columns the server sends, so the columns and cell values here
//! follow kube-apiserver's printers (`pkg/printers/internalversion/printers.go`) kind by
//! kind. As upstream, the server always produces the wide cells; kubectl hides the
//! priority-1 columns unless asked for `-o wide`. Kinds without a printer get the columns
//! upstream gives a custom resource without printer columns: `Name` and `Age`.
//!
//! Every field is read defensively: a missing field or one of the wrong type reads as its
//! zero value (or the API default upstream would have stored, e.g. `spec.replicas` 1), so
//! any JSON renders without panicking.

use std::collections::{BTreeSet, HashMap};

use jiff::Timestamp;
use serde_json::{Map, Value, json};

/// A meta.k8s.io/v1 Table for `objects` of `kind` (group "" / "apps" / ...). `now` is the
/// time AGE is computed against. `include_object`: "Object" (full object in each row's
/// `object`), "Metadata" (a PartialObjectMetadata with apiVersion meta.k8s.io/v1, kind
/// PartialObjectMetadata, and the object's metadata) or "None" — from the request's
/// `includeObject` query parameter, default "Metadata" as upstream.
///
/// Any other `include_object` value is treated as "Metadata"; upstream answers it with 400
/// Bad Request, so a caller that wants that must check the parameter first. `list_meta`
/// becomes the table's `metadata` (`{}` if it is not a JSON object).
pub fn table(
    group: &str,
    kind: &str,
    objects: &[Value],
    list_meta: Value,
    include_object: &str,
    now: Timestamp,
) -> Value {
    let printer = Printer::for_kind(group, kind);
    let columns: Vec<Value> = printer
        .columns()
        .iter()
        .map(|c| {
            json!({
                "name": c.name,
                "type": c.ty,
                "format": c.format,
                "description": c.description,
                "priority": c.priority,
            })
        })
        .collect();
    let rows: Vec<Value> = objects
        .iter()
        .map(|obj| {
            let (cells, conditions) = printer.row(obj, now);
            let mut row = Map::new();
            row.insert("cells".to_owned(), Value::Array(cells));
            if let Some(conditions) = conditions {
                row.insert("conditions".to_owned(), conditions);
            }
            row.insert("object".to_owned(), row_object(obj, include_object));
            Value::Object(row)
        })
        .collect();
    let metadata = if list_meta.is_object() {
        list_meta
    } else {
        Value::Object(Map::new())
    };
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": columns,
        "rows": rows,
    })
}

/// What a row carries in `object`, per the `includeObject` option.
fn row_object(obj: &Value, include_object: &str) -> Value {
    match include_object {
        "Object" => obj.clone(),
        // Upstream leaves the RawExtension empty, which serializes as null.
        "None" => Value::Null,
        _ => {
            let metadata = match obj.get("metadata") {
                Some(m @ Value::Object(_)) => m.clone(),
                _ => Value::Object(Map::new()),
            };
            json!({
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": metadata,
            })
        }
    }
}

// ---------------------------------------------------------------------------------------
// Columns
// ---------------------------------------------------------------------------------------

/// One `TableColumnDefinition`.
struct Column {
    name: &'static str,
    ty: &'static str,
    format: &'static str,
    description: &'static str,
    priority: i32,
}

const fn col(name: &'static str, ty: &'static str, description: &'static str) -> Column {
    Column {
        name,
        ty,
        format: "",
        description,
        priority: 0,
    }
}

const fn wide(name: &'static str, ty: &'static str, description: &'static str) -> Column {
    Column {
        name,
        ty,
        format: "",
        description,
        priority: 1,
    }
}

const NAME: Column = Column {
    name: "Name",
    ty: "string",
    format: "name",
    description: DOC_NAME,
    priority: 0,
};
const AGE: Column = col("Age", "string", DOC_CREATION_TIMESTAMP);
const CONTAINERS: Column = wide(
    "Containers",
    "string",
    "Names of each container in the template.",
);
const IMAGES: Column = wide(
    "Images",
    "string",
    "Images referenced by each container in the template.",
);

// Descriptions: upstream takes them from the API types' swagger docs.
const DOC_NAME: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
const DOC_CREATION_TIMESTAMP: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

const POD_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Ready",
        "string",
        "The aggregate readiness state of this pod for accepting traffic.",
    ),
    col(
        "Status",
        "string",
        "The aggregate status of the containers in this pod.",
    ),
    col(
        "Restarts",
        "string",
        "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
    ),
    AGE,
    wide(
        "IP",
        "string",
        "podIP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.",
    ),
    wide(
        "Node",
        "string",
        "NodeName indicates in which node this pod is scheduled. If empty, this pod is a candidate for scheduling by the scheduler defined in schedulerName. Once this field is set, the kubelet for this node becomes responsible for the lifecycle of this pod. This field should not be used to express a desire for the pod to be scheduled on a specific node. https://kubernetes.io/docs/concepts/scheduling-eviction/assign-pod-node/#nodename",
    ),
    wide(
        "Nominated Node",
        "string",
        "nominatedNodeName is set only when this pod preempts other pods on the node, but it cannot be scheduled right away as preemption victims receive their graceful termination periods. This field does not guarantee that the pod will be scheduled on this node. Scheduler may decide to place the pod elsewhere if other nodes become available sooner. Scheduler may also decide to give the resources on this node to a higher priority pod that is created after preemption. As a result, this field may be different than PodSpec.nodeName when the pod is scheduled.",
    ),
    wide(
        "Readiness Gates",
        "string",
        "If specified, all readiness gates will be evaluated for pod readiness. A pod is ready when all its containers are ready AND all conditions specified in the readiness gates have status equal to \"True\" More info: https://git.k8s.io/enhancements/keps/sig-network/580-pod-readiness-gates",
    ),
];

const DEPLOYMENT_COLUMNS: &[Column] = &[
    NAME,
    col("Ready", "string", "Number of the pod with ready state"),
    col(
        "Up-to-date",
        "string",
        "Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
    ),
    col(
        "Available",
        "string",
        "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
    ),
    AGE,
    CONTAINERS,
    IMAGES,
    wide(
        "Selector",
        "string",
        "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment.",
    ),
];

const REPLICA_SET_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Desired",
        "integer",
        "Replicas is the number of desired replicas. This is a pointer to distinguish between explicit zero and unspecified. Defaults to 1. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicationcontroller/#what-is-a-replicationcontroller",
    ),
    col(
        "Current",
        "integer",
        "Replicas is the most recently oberved number of replicas. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicationcontroller/#what-is-a-replicationcontroller",
    ),
    col(
        "Ready",
        "integer",
        "The number of ready replicas for this replica set.",
    ),
    AGE,
    CONTAINERS,
    IMAGES,
    wide(
        "Selector",
        "string",
        "Selector is a label query over pods that should match the replica count. If the selector is empty, it is defaulted to the labels present on the pod template. Label keys and values that must match in order to be controlled by this replica set. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors",
    ),
];

const SERVICE_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Type",
        "string",
        "type determines how the Service is exposed. Defaults to ClusterIP. Valid options are ExternalName, ClusterIP, NodePort, and LoadBalancer. \"ClusterIP\" allocates a cluster-internal IP address for load-balancing to endpoints. Endpoints are determined by the selector or if that is not specified, by manual construction of an Endpoints object or EndpointSlice objects. If clusterIP is \"None\", no virtual IP is allocated and the endpoints are published as a set of endpoints rather than a virtual IP. \"NodePort\" builds on ClusterIP and allocates a port on every node which routes to the same endpoints as the clusterIP. \"LoadBalancer\" builds on NodePort and creates an external load-balancer (if supported in the current cloud) which routes to the same endpoints as the clusterIP. \"ExternalName\" aliases this service to the specified externalName. Several other fields do not apply to ExternalName services. More info: https://kubernetes.io/docs/concepts/services-networking/service/#publishing-services-service-types",
    ),
    col(
        "Cluster-IP",
        "string",
        "clusterIP is the IP address of the service and is usually assigned randomly. If an address is specified manually, is in-range (as per system configuration), and is not in use, it will be allocated to the service; otherwise creation of the service will fail. This field may not be changed through updates unless the type field is also being changed to ExternalName (which requires this field to be blank) or the type field is being changed from ExternalName (in which case this field may optionally be specified, as describe above).  Valid values are \"None\", empty string (\"\"), or a valid IP address. Setting this to \"None\" makes a \"headless service\" (no virtual IP), which is useful when direct endpoint connections are preferred and proxying is not required.  Only applies to types ClusterIP, NodePort, and LoadBalancer. If this field is specified when creating a Service of type ExternalName, creation will fail. This field will be wiped when updating a Service to type ExternalName. More info: https://kubernetes.io/docs/concepts/services-networking/service/#virtual-ips-and-service-proxies",
    ),
    col(
        "External-IP",
        "string",
        "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service.  These IPs are not managed by Kubernetes.  The user is responsible for ensuring that traffic arrives at a node with this IP.  A common example is external load-balancers that are not part of the Kubernetes system.",
    ),
    col(
        "Port(s)",
        "string",
        "The list of ports that are exposed by this service. More info: https://kubernetes.io/docs/concepts/services-networking/service/#virtual-ips-and-service-proxies",
    ),
    AGE,
    wide(
        "Selector",
        "string",
        "Route service traffic to pods with label keys and values matching this selector. If empty or not present, the service is assumed to have an external process managing its endpoints, which Kubernetes will not modify. Only applies to types ClusterIP, NodePort, and LoadBalancer. Ignored if type is ExternalName. More info: https://kubernetes.io/docs/concepts/services-networking/service/",
    ),
];

const ENDPOINTS_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Endpoints",
        "string",
        "The set of all endpoints is the union of all subsets. Addresses are placed into subsets according to the IPs they share. A single address with multiple ports, some of which are ready and some of which are not (because they come from different containers) will result in the address being displayed in different subsets for the different ports. No address will appear in both Addresses and NotReadyAddresses in the same subset. Sets of addresses and ports that comprise a service.",
    ),
    AGE,
];

const ENDPOINT_SLICE_COLUMNS: &[Column] = &[
    NAME,
    col(
        "AddressType",
        "string",
        "addressType specifies the type of address carried by this EndpointSlice. All addresses in this slice must be the same type. This field is immutable after creation. The following address types are currently supported: * IPv4: Represents an IPv4 Address. * IPv6: Represents an IPv6 Address. * FQDN: Represents a Fully Qualified Domain Name.",
    ),
    col(
        "Ports",
        "string",
        "ports specifies the list of network ports exposed by each endpoint in this slice. Each port must have a unique name. When ports is empty, it indicates that there are no defined ports. When a port is defined with a nil port value, it indicates \"all ports\". Each slice may include a maximum of 100 ports.",
    ),
    col(
        "Endpoints",
        "string",
        "endpoints is a list of unique endpoints in this slice. Each slice may include a maximum of 1000 endpoints.",
    ),
    AGE,
];

const CONFIG_MAP_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Data",
        "string",
        "Data contains the configuration data. Each key must consist of alphanumeric characters, '-', '_' or '.'. Values with non-UTF-8 byte sequences must use the BinaryData field. The keys stored in Data must not overlap with the keys in the BinaryData field, this is enforced during validation process.",
    ),
    AGE,
];

const SECRET_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Type",
        "string",
        "Used to facilitate programmatic handling of secret data. More info: https://kubernetes.io/docs/concepts/configuration/secret/#secret-types",
    ),
    col(
        "Data",
        "string",
        "Data contains the secret data. Each key must consist of alphanumeric characters, '-', '_' or '.'. The serialized form of the secret data is a base64 encoded string, representing the arbitrary (possibly non-string) data value here. Described in https://tools.ietf.org/html/rfc4648#section-4",
    ),
    AGE,
];

const SERVICE_ACCOUNT_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Secrets",
        "string",
        "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use. Pods are only limited to this list if this service account has a \"kubernetes.io/enforce-mountable-secrets\" annotation set to \"true\". The \"kubernetes.io/enforce-mountable-secrets\" annotation is deprecated since v1.32. Prefer separate namespaces to isolate access to mounted secrets. This field should not be used to find auto-generated service account token secrets for use outside of pods. Instead, tokens can be requested directly using the TokenRequest API, or service account token secrets can be manually created. More info: https://kubernetes.io/docs/concepts/configuration/secret",
    ),
    AGE,
];

const NAMESPACE_COLUMNS: &[Column] = &[
    NAME,
    col("Status", "string", "The status of the namespace"),
    AGE,
];

const DOC_NODE_ADDRESSES: &str = "List of addresses reachable to the node. Queried from cloud provider, if available. More info: https://kubernetes.io/docs/reference/node/node-status/#addresses Note: This field is declared as mergeable, but the merge key is not sufficiently unique, which can cause data corruption when it is merged. Callers should instead use a full-replacement patch. See https://pr.k8s.io/79391 for an example. Consumers should assume that addresses can change during the lifetime of a Node. However, there are some exceptions where this may not be possible, such as Pods that inherit a Node's address in its own status or consumers of the downward API (status.hostIP).";

const NODE_COLUMNS: &[Column] = &[
    NAME,
    col("Status", "string", "The status of the node"),
    col("Roles", "string", "The roles of the node"),
    AGE,
    col("Version", "string", "Kubelet Version reported by the node."),
    wide("Internal-IP", "string", DOC_NODE_ADDRESSES),
    wide("External-IP", "string", DOC_NODE_ADDRESSES),
    wide(
        "OS-Image",
        "string",
        "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).",
    ),
    wide(
        "Kernel-Version",
        "string",
        "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).",
    ),
    wide(
        "Container-Runtime",
        "string",
        "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).",
    ),
];

const EVENT_COLUMNS: &[Column] = &[
    col(
        "Last Seen",
        "string",
        "The time at which the most recent occurrence of this event was recorded.",
    ),
    col(
        "Type",
        "string",
        "Type of this event (Normal, Warning), new types could be added in the future",
    ),
    col(
        "Reason",
        "string",
        "This should be a short, machine understandable string that gives the reason for the transition into the object's current status.",
    ),
    col("Object", "string", "The object that this event is about."),
    wide(
        "Subobject",
        "string",
        "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement, such as desiredState.manifest.containers[2]. For example, if the object reference is to a container within a pod, this would take on a value like: \"spec.containers{name}\" (where \"name\" refers to the name of the container that triggered the event) or if no container name is specified \"spec.containers[2]\" (container with index 2 in this pod). This syntax is chosen only to have some well-defined way of referencing a part of an object.",
    ),
    wide(
        "Source",
        "string",
        "The component reporting this event. Should be a short machine understandable string.",
    ),
    col(
        "Message",
        "string",
        "A human-readable description of the status of this operation.",
    ),
    wide(
        "First Seen",
        "string",
        "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)",
    ),
    wide(
        "Count",
        "string",
        "The number of times this event has occurred.",
    ),
    Column {
        name: "Name",
        ty: "string",
        format: "name",
        description: DOC_NAME,
        priority: 1,
    },
];

const LEASE_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Holder",
        "string",
        "holderIdentity contains the identity of the holder of a current lease. If Coordinated Leader Election is used, the holder identity must be equal to the elected LeaseCandidate.metadata.name field.",
    ),
    AGE,
];

/// Roles and ClusterRoles: upstream prints the creation time itself, not an age.
const ROLE_COLUMNS: &[Column] = &[NAME, col("Created At", "date", DOC_CREATION_TIMESTAMP)];

const DOC_USERS: &str = "Users in the roleBinding";
const DOC_GROUPS: &str = "Groups in the roleBinding";
const DOC_SERVICE_ACCOUNTS: &str = "ServiceAccounts in the roleBinding";

const ROLE_BINDING_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Role",
        "string",
        "RoleRef can reference a Role in the current namespace or a ClusterRole in the global namespace. If the RoleRef cannot be resolved, the Authorizer must return an error. This field is immutable.",
    ),
    AGE,
    wide("Users", "string", DOC_USERS),
    wide("Groups", "string", DOC_GROUPS),
    wide("ServiceAccounts", "string", DOC_SERVICE_ACCOUNTS),
];

const CLUSTER_ROLE_BINDING_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Role",
        "string",
        "RoleRef can only reference a ClusterRole in the global namespace. If the RoleRef cannot be resolved, the Authorizer must return an error. This field is immutable.",
    ),
    AGE,
    wide("Users", "string", DOC_USERS),
    wide("Groups", "string", DOC_GROUPS),
    wide("ServiceAccounts", "string", DOC_SERVICE_ACCOUNTS),
];

const MANIFEST_SOURCE_COLUMNS: &[Column] = &[
    NAME,
    col(
        "Kind",
        "string",
        "Where the manifests come from: dir or git.",
    ),
    col(
        "Revision",
        "string",
        "The revision last applied: a git commit, or a folder's content hash.",
    ),
    col("Ready", "string", "Whether the last revision is applied."),
    col("Applied", "integer", "Objects this source owns."),
    col("Pruned", "integer", "Objects the last sync pruned."),
    AGE,
    wide("Source", "string", "The folder path or the git URL."),
    wide("Message", "string", "The Ready condition's message."),
];

/// What a custom resource without printer columns gets: its name and a `date` Age column.
const DEFAULT_COLUMNS: &[Column] = &[NAME, col("Age", "date", DOC_CREATION_TIMESTAMP)];

// ---------------------------------------------------------------------------------------
// Printers
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy)]
enum Printer {
    Pod,
    Deployment,
    ReplicaSet,
    Service,
    Endpoints,
    EndpointSlice,
    ConfigMap,
    Secret,
    ServiceAccount,
    Namespace,
    Node,
    Event,
    Lease,
    Role,
    RoleBinding,
    ClusterRoleBinding,
    ManifestSource,
    Default,
}

impl Printer {
    fn for_kind(group: &str, kind: &str) -> Printer {
        match (group, kind) {
            ("", "Pod") => Printer::Pod,
            ("apps", "Deployment") => Printer::Deployment,
            ("apps", "ReplicaSet") => Printer::ReplicaSet,
            ("", "Service") => Printer::Service,
            ("", "Endpoints") => Printer::Endpoints,
            ("discovery.k8s.io", "EndpointSlice") => Printer::EndpointSlice,
            ("", "ConfigMap") => Printer::ConfigMap,
            ("", "Secret") => Printer::Secret,
            ("", "ServiceAccount") => Printer::ServiceAccount,
            ("", "Namespace") => Printer::Namespace,
            ("", "Node") => Printer::Node,
            ("", "Event") => Printer::Event,
            ("coordination.k8s.io", "Lease") => Printer::Lease,
            ("rbac.authorization.k8s.io", "Role" | "ClusterRole") => Printer::Role,
            ("rbac.authorization.k8s.io", "RoleBinding") => Printer::RoleBinding,
            ("rbac.authorization.k8s.io", "ClusterRoleBinding") => Printer::ClusterRoleBinding,
            ("moor.dev", "ManifestSource") => Printer::ManifestSource,
            _ => Printer::Default,
        }
    }

    fn columns(self) -> &'static [Column] {
        match self {
            Printer::Pod => POD_COLUMNS,
            Printer::Deployment => DEPLOYMENT_COLUMNS,
            Printer::ReplicaSet => REPLICA_SET_COLUMNS,
            Printer::Service => SERVICE_COLUMNS,
            Printer::Endpoints => ENDPOINTS_COLUMNS,
            Printer::EndpointSlice => ENDPOINT_SLICE_COLUMNS,
            Printer::ConfigMap => CONFIG_MAP_COLUMNS,
            Printer::Secret => SECRET_COLUMNS,
            Printer::ServiceAccount => SERVICE_ACCOUNT_COLUMNS,
            Printer::Namespace => NAMESPACE_COLUMNS,
            Printer::Node => NODE_COLUMNS,
            Printer::Event => EVENT_COLUMNS,
            Printer::Lease => LEASE_COLUMNS,
            Printer::Role => ROLE_COLUMNS,
            Printer::RoleBinding => ROLE_BINDING_COLUMNS,
            Printer::ClusterRoleBinding => CLUSTER_ROLE_BINDING_COLUMNS,
            Printer::ManifestSource => MANIFEST_SOURCE_COLUMNS,
            Printer::Default => DEFAULT_COLUMNS,
        }
    }

    /// The row's cells (one per column) and its `conditions`, if any.
    fn row(self, obj: &Value, now: Timestamp) -> (Vec<Value>, Option<Value>) {
        let name = || Value::from(s(obj, &["metadata", "name"]));
        let age = || Value::from(since(time(obj, &["metadata", "creationTimestamp"]), now));
        let cells = match self {
            Printer::Pod => return pod_row(obj, now),
            Printer::Deployment => deployment_cells(obj, name(), age()),
            Printer::ReplicaSet => replica_set_cells(obj, name(), age()),
            Printer::Service => service_cells(obj, name(), age()),
            Printer::Endpoints => vec![name(), format_endpoints(obj).into(), age()],
            Printer::EndpointSlice => vec![
                name(),
                s(obj, &["addressType"]).into(),
                format_discovery_ports(arr(obj, &["ports"])).into(),
                format_discovery_endpoints(arr(obj, &["endpoints"])).into(),
                age(),
            ],
            Printer::ConfigMap => {
                let data = map_len(obj, &["data"]) + map_len(obj, &["binaryData"]);
                vec![name(), count(data), age()]
            }
            Printer::Secret => vec![
                name(),
                non_empty_or(s(obj, &["type"]), "Opaque").into(),
                count(map_len(obj, &["data"])),
                age(),
            ],
            Printer::ServiceAccount => {
                vec![name(), count(arr(obj, &["secrets"]).len()), age()]
            }
            Printer::Namespace => vec![
                name(),
                non_empty_or(s(obj, &["status", "phase"]), "Active").into(),
                age(),
            ],
            Printer::Node => node_cells(obj, name(), age()),
            Printer::Event => event_cells(obj, now),
            Printer::Lease => vec![name(), s(obj, &["spec", "holderIdentity"]).into(), age()],
            Printer::Role => vec![name(), created_at(obj).into()],
            Printer::RoleBinding | Printer::ClusterRoleBinding => binding_cells(obj, name(), age()),
            Printer::ManifestSource => manifest_source_cells(obj, name(), age()),
            Printer::Default => vec![name(), date_cell(obj, now)],
        };
        (cells, None)
    }
}

fn manifest_source_cells(obj: &Value, name: Value, age: Value) -> Vec<Value> {
    let git = at(obj, &["spec", "git"]).is_some_and(|g| !g.is_null());
    let (kind, source) = if git {
        (
            "git",
            crate::gitops::source::git::redact_url(s(obj, &["spec", "git", "url"])),
        )
    } else {
        ("dir", s(obj, &["spec", "directory", "path"]).to_owned())
    };
    let revision = s(obj, &["status", "revision"]);
    let short = revision.strip_prefix("sha256:").unwrap_or(revision);
    let ready = arr(obj, &["status", "conditions"])
        .iter()
        .find(|c| s(c, &["type"]) == "Ready");
    let ready_status = ready.map_or("Unknown", |c| s(c, &["status"]));
    let message = ready.map_or("", |c| s(c, &["message"]));
    vec![
        name,
        kind.into(),
        short.chars().take(7).collect::<String>().into(),
        ready_status.into(),
        count(arr(obj, &["status", "inventory"]).len()),
        Value::from(int(obj, &["status", "pruned"])),
        age,
        source.into(),
        message.into(),
    ]
}

/// `printRole`'s cell: the creation time in UTC as RFC 3339 (Go's zero time when unset).
fn created_at(obj: &Value) -> String {
    time(obj, &["metadata", "creationTimestamp"])
        .unwrap_or_else(go_zero_time)
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// `printRoleBinding` / `printClusterRoleBinding`: `Kind/name` of the role, then the
/// subjects split as upstream's `SubjectsStrings` does (ServiceAccounts as `namespace/name`).
fn binding_cells(obj: &Value, name: Value, age: Value) -> Vec<Value> {
    let role = format!(
        "{}/{}",
        s(obj, &["roleRef", "kind"]),
        s(obj, &["roleRef", "name"])
    );
    let (mut users, mut groups, mut service_accounts) = (vec![], vec![], vec![]);
    for subject in arr(obj, &["subjects"]) {
        let subject_name = s(subject, &["name"]);
        match s(subject, &["kind"]) {
            "User" => users.push(subject_name.to_owned()),
            "Group" => groups.push(subject_name.to_owned()),
            "ServiceAccount" => {
                service_accounts.push(format!("{}/{subject_name}", s(subject, &["namespace"])))
            }
            _ => {}
        }
    }
    vec![
        name,
        role.into(),
        age,
        users.join(", ").into(),
        groups.join(", ").into(),
        service_accounts.join(", ").into(),
    ]
}

/// A Go `int64` cell from a length.
fn count(n: usize) -> Value {
    Value::from(i64::try_from(n).unwrap_or(i64::MAX))
}

fn non_empty_or<'a>(value: &'a str, default: &'a str) -> &'a str {
    if value.is_empty() { default } else { value }
}

/// The `date`-typed Age cell of a custom resource: the human age, `<invalid>` for an
/// unparseable timestamp, null (kubectl shows `<none>`) when there is none.
fn date_cell(obj: &Value, now: Timestamp) -> Value {
    match at(obj, &["metadata", "creationTimestamp"]).and_then(Value::as_str) {
        None => Value::Null,
        Some("") | Some("null") => "<unknown>".into(),
        Some(text) => match text.parse::<Timestamp>() {
            Ok(t) if t == go_zero_time() => "<unknown>".into(),
            Ok(t) => human_duration(now.as_nanosecond() - t.as_nanosecond()).into(),
            Err(_) => "<invalid>".into(),
        },
    }
}

// ---------------------------------------------------------------------------------------
// Pod
// ---------------------------------------------------------------------------------------

fn pod_row(pod: &Value, now: Timestamp) -> (Vec<Value>, Option<Value>) {
    let status = at(pod, &["status"]).unwrap_or(&Value::Null);
    let init_specs = arr(pod, &["spec", "initContainers"]);
    let mut total = arr(pod, &["spec", "containers"]).len();
    let mut ready = 0usize;
    let mut restarts: i64 = 0;
    let mut restartable_init_restarts: i64 = 0;
    let mut last_restart = go_zero_time();
    let mut last_restartable_init_restart = go_zero_time();

    // The registry sets Pending on create, so a pod never lacks a phase upstream.
    let phase = non_empty_or(s(status, &["phase"]), "Pending");
    let mut reason = phase.to_owned();
    let status_reason = s(status, &["reason"]);
    if !status_reason.is_empty() {
        reason = status_reason.to_owned();
    }
    for condition in arr(status, &["conditions"]) {
        if s(condition, &["type"]) == "PodScheduled"
            && s(condition, &["reason"]) == "SchedulingGated"
        {
            reason = "SchedulingGated".to_owned();
        }
    }

    let conditions = match phase {
        "Succeeded" => Some(json!([{
            "type": "Completed",
            "status": "True",
            "reason": "Succeeded",
            "message": "The pod has completed successfully.",
        }])),
        "Failed" => Some(json!([{
            "type": "Completed",
            "status": "True",
            "reason": "Failed",
            "message": "The pod failed.",
        }])),
        _ => None,
    };

    // Sidecars: init containers with restartPolicy Always count as containers.
    let mut restartable: HashMap<&str, bool> = HashMap::new();
    for container in init_specs {
        let always = s(container, &["restartPolicy"]) == "Always";
        restartable.insert(s(container, &["name"]), always);
        if always {
            total += 1;
        }
    }

    let mut initializing = false;
    for (i, container) in arr(status, &["initContainerStatuses"]).iter().enumerate() {
        let restart_count = int(container, &["restartCount"]);
        restarts = restarts.saturating_add(restart_count);
        let terminated_at = last_terminated_at(container);
        if let Some(t) = terminated_at
            && last_restart < t
        {
            last_restart = t;
        }
        let is_restartable = restartable
            .get(s(container, &["name"]))
            .copied()
            .unwrap_or(false);
        if is_restartable {
            restartable_init_restarts = restartable_init_restarts.saturating_add(restart_count);
            if let Some(t) = terminated_at
                && last_restartable_init_restart < t
            {
                last_restartable_init_restart = t;
            }
        }
        let terminated = object(container, &["state", "terminated"]);
        let waiting = object(container, &["state", "waiting"]);
        if let Some(terminated) = terminated
            && int(terminated, &["exitCode"]) == 0
        {
            continue;
        }
        if is_restartable && flag(container, &["started"]) {
            if flag(container, &["ready"]) {
                ready += 1;
            }
            continue;
        }
        if let Some(terminated) = terminated {
            // Initialization failed.
            let terminated_reason = s(terminated, &["reason"]);
            reason = if !terminated_reason.is_empty() {
                format!("Init:{terminated_reason}")
            } else if int(terminated, &["signal"]) != 0 {
                format!("Init:Signal:{}", int(terminated, &["signal"]))
            } else {
                format!("Init:ExitCode:{}", int(terminated, &["exitCode"]))
            };
        } else if let Some(waiting) = waiting
            && !s(waiting, &["reason"]).is_empty()
            && s(waiting, &["reason"]) != "PodInitializing"
        {
            reason = format!("Init:{}", s(waiting, &["reason"]));
        } else {
            reason = format!("Init:{i}/{}", init_specs.len());
        }
        initializing = true;
        break;
    }

    if !initializing || condition_true_first(status, "Initialized") {
        restarts = restartable_init_restarts;
        last_restart = last_restartable_init_restart;
        let mut has_running = false;
        for container in arr(status, &["containerStatuses"]).iter().rev() {
            restarts = restarts.saturating_add(int(container, &["restartCount"]));
            if let Some(t) = last_terminated_at(container)
                && last_restart < t
            {
                last_restart = t;
            }
            let waiting = object(container, &["state", "waiting"]);
            let terminated = object(container, &["state", "terminated"]);
            let waiting_reason = waiting.map_or("", |w| s(w, &["reason"]));
            let terminated_reason = terminated.map_or("", |t| s(t, &["reason"]));
            if !waiting_reason.is_empty() {
                reason = waiting_reason.to_owned();
            } else if !terminated_reason.is_empty() {
                reason = terminated_reason.to_owned();
            } else if let Some(terminated) = terminated {
                reason = if int(terminated, &["signal"]) != 0 {
                    format!("Signal:{}", int(terminated, &["signal"]))
                } else {
                    format!("ExitCode:{}", int(terminated, &["exitCode"]))
                };
            } else if flag(container, &["ready"])
                && object(container, &["state", "running"]).is_some()
            {
                has_running = true;
                ready += 1;
            }
        }
        // Back to Running if a container still runs after another completed.
        if reason == "Completed" && has_running {
            reason = if condition_true_any(status, "Ready") {
                "Running".to_owned()
            } else {
                "NotReady".to_owned()
            };
        }
    }

    if present(pod, &["metadata", "deletionTimestamp"]) {
        if status_reason == "NodeLost" {
            reason = "Unknown".to_owned();
        } else if phase != "Failed" && phase != "Succeeded" {
            reason = "Terminating".to_owned();
        }
    }

    let restarts_cell = if restarts != 0 && last_restart != go_zero_time() {
        format!("{restarts} ({} ago)", since(Some(last_restart), now))
    } else {
        restarts.to_string()
    };

    let mut pod_ip = s(status, &["podIP"]);
    if pod_ip.is_empty() {
        pod_ip = arr(status, &["podIPs"])
            .first()
            .map_or("", |ip| s(ip, &["ip"]));
    }
    let gates = arr(pod, &["spec", "readinessGates"]);
    let readiness_gates = if gates.is_empty() {
        "<none>".to_owned()
    } else {
        let conditions = arr(status, &["conditions"]);
        let true_gates = gates
            .iter()
            .filter(|gate| {
                let wanted = s(gate, &["conditionType"]);
                conditions
                    .iter()
                    .find(|c| s(c, &["type"]) == wanted)
                    .is_some_and(|c| s(c, &["status"]) == "True")
            })
            .count();
        format!("{true_gates}/{}", gates.len())
    };

    let cells = vec![
        s(pod, &["metadata", "name"]).into(),
        format!("{ready}/{total}").into(),
        reason.into(),
        restarts_cell.into(),
        since(time(pod, &["metadata", "creationTimestamp"]), now).into(),
        non_empty_or(pod_ip, "<none>").into(),
        non_empty_or(s(pod, &["spec", "nodeName"]), "<none>").into(),
        non_empty_or(s(status, &["nominatedNodeName"]), "<none>").into(),
        readiness_gates.into(),
    ];
    (cells, conditions)
}

/// When the container's previous run ended, if `lastState.terminated` is set (Go's zero
/// time when it carries no `finishedAt`).
fn last_terminated_at(container: &Value) -> Option<Timestamp> {
    object(container, &["lastState", "terminated"])
        .map(|t| time(t, &["finishedAt"]).unwrap_or_else(go_zero_time))
}

/// Whether the first condition of `kind` has status True.
fn condition_true_first(status: &Value, kind: &str) -> bool {
    arr(status, &["conditions"])
        .iter()
        .find(|c| s(c, &["type"]) == kind)
        .is_some_and(|c| s(c, &["status"]) == "True")
}

/// Whether any condition of `kind` has status True.
fn condition_true_any(status: &Value, kind: &str) -> bool {
    arr(status, &["conditions"])
        .iter()
        .any(|c| s(c, &["type"]) == kind && s(c, &["status"]) == "True")
}

// ---------------------------------------------------------------------------------------
// Workloads
// ---------------------------------------------------------------------------------------

/// `spec.replicas`, 1 when unset as the API defaults it.
fn replicas(obj: &Value) -> i64 {
    match at(obj, &["spec", "replicas"]) {
        None | Some(Value::Null) => 1,
        Some(v) => as_int(v),
    }
}

/// Container names and images of a pod template, comma-separated.
fn container_cells(obj: &Value) -> (Value, Value) {
    let containers = arr(obj, &["spec", "template", "spec", "containers"]);
    let names: Vec<&str> = containers.iter().map(|c| s(c, &["name"])).collect();
    let images: Vec<&str> = containers.iter().map(|c| s(c, &["image"])).collect();
    (names.join(",").into(), images.join(",").into())
}

fn deployment_cells(obj: &Value, name: Value, age: Value) -> Vec<Value> {
    let (containers, images) = container_cells(obj);
    let selector =
        label_selector(at(obj, &["spec", "selector"])).unwrap_or_else(|| "<invalid>".to_owned());
    vec![
        name,
        format!(
            "{}/{}",
            int(obj, &["status", "readyReplicas"]),
            replicas(obj)
        )
        .into(),
        int(obj, &["status", "updatedReplicas"]).into(),
        int(obj, &["status", "availableReplicas"]).into(),
        age,
        containers,
        images,
        selector.into(),
    ]
}

fn replica_set_cells(obj: &Value, name: Value, age: Value) -> Vec<Value> {
    let (containers, images) = container_cells(obj);
    // metav1.FormatLabelSelector.
    let selector = match label_selector(at(obj, &["spec", "selector"])) {
        None => "<error>".to_owned(),
        Some(selector) if selector.is_empty() => "<none>".to_owned(),
        Some(selector) => selector,
    };
    vec![
        name,
        replicas(obj).into(),
        int(obj, &["status", "replicas"]).into(),
        int(obj, &["status", "readyReplicas"]).into(),
        age,
        containers,
        images,
        selector.into(),
    ]
}

/// A `metav1.LabelSelector` as `labels.Selector.String()` prints it (requirements sorted by
/// key; an absent or empty selector prints ""), or `None` where upstream fails to convert
/// it (invalid key, value or operator).
fn label_selector(selector: Option<&Value>) -> Option<String> {
    let Some(Value::Object(selector)) = selector else {
        return Some(String::new());
    };
    let match_labels = match selector.get("matchLabels") {
        None | Some(Value::Null) => None,
        Some(Value::Object(labels)) => Some(labels),
        Some(_) => return None,
    };
    let expressions = match selector.get("matchExpressions") {
        None | Some(Value::Null) => &[][..],
        Some(Value::Array(expressions)) => expressions.as_slice(),
        Some(_) => return None,
    };
    let mut requirements: Vec<(&str, String)> = Vec::new();
    for (key, value) in match_labels.into_iter().flatten() {
        let value = value.as_str()?;
        if !is_qualified_name(key) || !is_label_value(value) {
            return None;
        }
        requirements.push((key, format!("{key}={value}")));
    }
    for expression in expressions {
        let key = s(expression, &["key"]);
        let mut values = Vec::new();
        for value in arr(expression, &["values"]) {
            let value = value.as_str()?;
            if !is_label_value(value) {
                return None;
            }
            values.push(value);
        }
        values.sort_unstable();
        if !is_qualified_name(key) {
            return None;
        }
        let rendered = match s(expression, &["operator"]) {
            "In" if !values.is_empty() => format!("{key} in ({})", values.join(",")),
            "NotIn" if !values.is_empty() => format!("{key} notin ({})", values.join(",")),
            "Exists" if values.is_empty() => key.to_owned(),
            "DoesNotExist" if values.is_empty() => format!("!{key}"),
            _ => return None,
        };
        requirements.push((key, rendered));
    }
    requirements.sort_by(|a, b| a.0.cmp(b.0));
    let rendered: Vec<String> = requirements.into_iter().map(|(_, r)| r).collect();
    Some(rendered.join(","))
}

/// `validation.IsQualifiedName`: an optional DNS-subdomain prefix and `/`, then a name of
/// at most 63 alphanumerics, `-`, `_` or `.`, starting and ending alphanumeric.
fn is_qualified_name(value: &str) -> bool {
    let name = match value.split('/').collect::<Vec<_>>().as_slice() {
        [name] => *name,
        [prefix, name] => {
            if !is_dns1123_subdomain(prefix) {
                return false;
            }
            *name
        }
        _ => return false,
    };
    name.len() <= 63 && is_qualified_name_part(name)
}

fn is_qualified_name_part(name: &str) -> bool {
    let bytes = name.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

/// `validation.IsValidLabelValue`.
fn is_label_value(value: &str) -> bool {
    value.is_empty() || (value.len() <= 63 && is_qualified_name_part(value))
}

/// `validation.IsDNS1123Subdomain`.
fn is_dns1123_subdomain(value: &str) -> bool {
    value.len() <= 253
        && value.split('.').all(|label| {
            let bytes = label.as_bytes();
            match (bytes.first(), bytes.last()) {
                (Some(first), Some(last)) => {
                    is_lower_alnum(*first)
                        && is_lower_alnum(*last)
                        && bytes.iter().all(|b| is_lower_alnum(*b) || *b == b'-')
                }
                _ => false,
            }
        })
}

fn is_lower_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// `labels.FormatLabels`: `k=v` sorted by key, comma-separated; `<none>` when empty.
fn format_labels(labels: Option<&Value>) -> String {
    let Some(Value::Object(labels)) = labels else {
        return "<none>".to_owned();
    };
    let mut pairs: Vec<(&str, &str)> = labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str().unwrap_or("")))
        .collect();
    pairs.sort_unstable();
    let rendered: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    if rendered.is_empty() {
        "<none>".to_owned()
    } else {
        rendered.join(",")
    }
}

// ---------------------------------------------------------------------------------------
// Service, Endpoints, EndpointSlice
// ---------------------------------------------------------------------------------------

fn service_cells(svc: &Value, name: Value, age: Value) -> Vec<Value> {
    let service_type = non_empty_or(s(svc, &["spec", "type"]), "ClusterIP");
    // v1 defaulting fills clusterIPs from clusterIP.
    let cluster_ips = arr(svc, &["spec", "clusterIPs"]);
    let cluster_ip = s(svc, &["spec", "clusterIP"]);
    let internal_ip = match cluster_ips.first() {
        Some(ip) => ip.as_str().unwrap_or(""),
        None if !cluster_ip.is_empty() => cluster_ip,
        None => "<none>",
    };
    let ports: Vec<String> = arr(svc, &["spec", "ports"])
        .iter()
        .map(|port| {
            let number = int(port, &["port"]);
            let protocol = non_empty_or(s(port, &["protocol"]), "TCP");
            let node_port = int(port, &["nodePort"]);
            if node_port > 0 {
                format!("{number}:{node_port}/{protocol}")
            } else {
                format!("{number}/{protocol}")
            }
        })
        .collect();
    let ports = if ports.is_empty() {
        "<none>".to_owned()
    } else {
        ports.join(",")
    };
    vec![
        name,
        service_type.into(),
        internal_ip.into(),
        service_external_ip(svc, service_type).into(),
        ports.into(),
        age,
        format_labels(at(svc, &["spec", "selector"])).into(),
    ]
}

/// `getServiceExternalIP` with wide output (no clipping of load-balancer addresses).
fn service_external_ip(svc: &Value, service_type: &str) -> String {
    let external_ips: Vec<&str> = arr(svc, &["spec", "externalIPs"])
        .iter()
        .map(|ip| ip.as_str().unwrap_or(""))
        .collect();
    match service_type {
        "ClusterIP" | "NodePort" => {
            if external_ips.is_empty() {
                "<none>".to_owned()
            } else {
                external_ips.join(",")
            }
        }
        "LoadBalancer" => {
            let ingress: BTreeSet<&str> = arr(svc, &["status", "loadBalancer", "ingress"])
                .iter()
                .filter_map(|ingress| {
                    let ip = s(ingress, &["ip"]);
                    let hostname = s(ingress, &["hostname"]);
                    if !ip.is_empty() {
                        Some(ip)
                    } else if !hostname.is_empty() {
                        Some(hostname)
                    } else {
                        None
                    }
                })
                .collect();
            let lb = ingress.into_iter().collect::<Vec<_>>().join(",");
            if !external_ips.is_empty() {
                let mut all: Vec<&str> = Vec::new();
                if !lb.is_empty() {
                    all.extend(lb.split(','));
                }
                all.extend(external_ips);
                all.join(",")
            } else if !lb.is_empty() {
                lb
            } else {
                "<pending>".to_owned()
            }
        }
        "ExternalName" => s(svc, &["spec", "externalName"]).to_owned(),
        _ => "<unknown>".to_owned(),
    }
}

const MAX_LISTED: usize = 3;

/// `formatEndpoints`: up to three `ip:port` (every port of every subset), then
/// ` + N more...`; `<none>` without subsets.
fn format_endpoints(endpoints: &Value) -> String {
    let subsets = arr(endpoints, &["subsets"]);
    if subsets.is_empty() {
        return "<none>".to_owned();
    }
    let mut list: Vec<String> = Vec::new();
    let mut more = false;
    let mut total: usize = 0;
    for subset in subsets {
        let addresses = arr(subset, &["addresses"]);
        let ports = arr(subset, &["ports"]);
        if ports.is_empty() {
            // Headless services may have no ports.
            total += addresses.len();
            for address in addresses {
                if list.len() == MAX_LISTED {
                    more = true;
                    break;
                }
                list.push(s(address, &["ip"]).to_owned());
            }
            continue;
        }
        for port in ports {
            total += addresses.len();
            for address in addresses {
                if list.len() == MAX_LISTED {
                    more = true;
                    break;
                }
                list.push(join_host_port(s(address, &["ip"]), int(port, &["port"])));
            }
        }
    }
    let joined = list.join(",");
    if more {
        format!("{joined} + {} more...", total.saturating_sub(MAX_LISTED))
    } else {
        joined
    }
}

/// Go's `net.JoinHostPort`: IPv6 hosts in brackets.
fn join_host_port(host: &str, port: i64) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn format_discovery_ports(ports: &[Value]) -> String {
    let mut list: Vec<String> = Vec::new();
    let mut more = false;
    for port in ports {
        if list.len() < MAX_LISTED {
            let number = if present(port, &["port"]) {
                int(port, &["port"]).to_string()
            } else if let Some(name) = at(port, &["name"]).and_then(Value::as_str) {
                name.to_owned()
            } else {
                "*".to_owned()
            };
            list.push(number);
        } else if list.len() == MAX_LISTED {
            more = true;
        }
    }
    list_with_more(&list, more, ports.len())
}

fn format_discovery_endpoints(endpoints: &[Value]) -> String {
    let mut list: Vec<String> = Vec::new();
    let mut more = false;
    let mut total: usize = 0;
    for endpoint in endpoints {
        for address in arr(endpoint, &["addresses"]) {
            if list.len() < MAX_LISTED {
                list.push(address.as_str().unwrap_or("").to_owned());
            } else if list.len() == MAX_LISTED {
                more = true;
            }
            total += 1;
        }
    }
    list_with_more(&list, more, total)
}

fn list_with_more(list: &[String], more: bool, total: usize) -> String {
    let joined = list.join(",");
    if more {
        format!("{joined} + {} more...", total.saturating_sub(MAX_LISTED))
    } else if joined.is_empty() {
        "<unset>".to_owned()
    } else {
        joined
    }
}

// ---------------------------------------------------------------------------------------
// Node, Event
// ---------------------------------------------------------------------------------------

fn node_cells(node: &Value, name: Value, age: Value) -> Vec<Value> {
    // The last Ready condition wins, as in upstream's condition map.
    let ready = arr(node, &["status", "conditions"])
        .iter()
        .rfind(|c| s(c, &["type"]) == "Ready")
        .map(|c| s(c, &["status"]));
    let mut status = vec![match ready {
        Some("True") => "Ready",
        Some(_) => "NotReady",
        None => "Unknown",
    }];
    if flag(node, &["spec", "unschedulable"]) {
        status.push("SchedulingDisabled");
    }

    let mut roles: BTreeSet<&str> = BTreeSet::new();
    if let Some(Value::Object(labels)) = at(node, &["metadata", "labels"]) {
        for (key, value) in labels {
            if let Some(role) = key.strip_prefix("node-role.kubernetes.io/") {
                if !role.is_empty() {
                    roles.insert(role);
                }
            } else if key == "kubernetes.io/role" {
                let role = value.as_str().unwrap_or("");
                if !role.is_empty() {
                    roles.insert(role);
                }
            }
        }
    }
    let roles = if roles.is_empty() {
        "<none>".to_owned()
    } else {
        roles.into_iter().collect::<Vec<_>>().join(",")
    };

    let address = |kind: &str| -> Value {
        arr(node, &["status", "addresses"])
            .iter()
            .find(|a| s(a, &["type"]) == kind)
            .map_or("<none>", |a| s(a, &["address"]))
            .into()
    };
    let info = |field: &str| -> Value {
        non_empty_or(s(node, &["status", "nodeInfo", field]), "<unknown>").into()
    };
    vec![
        name,
        status.join(",").into(),
        roles.into(),
        age,
        s(node, &["status", "nodeInfo", "kubeletVersion"]).into(),
        address("InternalIP"),
        address("ExternalIP"),
        info("osImage"),
        info("kernelVersion"),
        info("containerRuntimeVersion"),
    ]
}

fn event_cells(event: &Value, now: Timestamp) -> Vec<Value> {
    let first_timestamp = match time(event, &["firstTimestamp"]) {
        Some(t) => since(Some(t), now),
        None => since(time(event, &["eventTime"]), now),
    };
    let mut last_timestamp = match time(event, &["lastTimestamp"]) {
        Some(t) => since(Some(t), now),
        None => first_timestamp.clone(),
    };
    let mut count = int(event, &["count"]);
    if let Some(series) = object(event, &["series"]) {
        last_timestamp = since(time(series, &["lastObservedTime"]), now);
        count = int(series, &["count"]);
    } else if count == 0 {
        // Singleton events don't have a count set in the new API.
        count = 1;
    }

    let kind = s(event, &["involvedObject", "kind"]).to_lowercase();
    let involved_name = s(event, &["involvedObject", "name"]);
    let target = if involved_name.is_empty() {
        kind
    } else {
        format!("{kind}/{involved_name}")
    };

    let component = non_empty_or(
        s(event, &["source", "component"]),
        s(event, &["reportingComponent"]),
    );
    let host = non_empty_or(
        s(event, &["source", "host"]),
        s(event, &["reportingInstance"]),
    );
    let source = if host.is_empty() {
        component.to_owned()
    } else {
        format!("{component}, {host}")
    };

    vec![
        last_timestamp.into(),
        s(event, &["type"]).into(),
        s(event, &["reason"]).into(),
        target.into(),
        s(event, &["involvedObject", "fieldPath"]).into(),
        source.into(),
        s(event, &["message"]).trim().into(),
        first_timestamp.into(),
        count.into(),
        s(event, &["metadata", "name"]).into(),
    ]
}

// ---------------------------------------------------------------------------------------
// Time
// ---------------------------------------------------------------------------------------

/// Go's zero `time.Time`, 0001-01-01T00:00:00Z: what an unset timestamp decodes to.
fn go_zero_time() -> Timestamp {
    Timestamp::from_second(-62_135_596_800).unwrap_or(Timestamp::MIN)
}

/// A timestamp field; `None` when unset, unparseable or Go's zero time.
fn time(v: &Value, path: &[&str]) -> Option<Timestamp> {
    at(v, path)
        .and_then(Value::as_str)
        .and_then(|text| text.parse::<Timestamp>().ok())
        .filter(|t| *t != go_zero_time())
}

/// `translateTimestampSince`: the human age of `t` at `now`, `<unknown>` when unset.
fn since(t: Option<Timestamp>, now: Timestamp) -> String {
    match t {
        None => "<unknown>".to_owned(),
        Some(t) => human_duration(now.as_nanosecond() - t.as_nanosecond()),
    }
}

/// apimachinery's `duration.HumanDuration` of `nanos` (saturated to a Go `time.Duration`):
/// two or three significant figures, e.g. `45s`, `119s`, `2m30s`, `42m`, `5h12m`, `20h`,
/// `3d4h`, `200d`, `2y35d`, `9y`; `0s` for at most a second into the future (clock skew)
/// and `<invalid>` beyond.
fn human_duration(nanos: i128) -> String {
    const SECOND: i64 = 1_000_000_000;
    const MINUTE: i64 = 60 * SECOND;
    const HOUR: i64 = 60 * MINUTE;
    let d = i64::try_from(nanos).unwrap_or(if nanos < 0 { i64::MIN } else { i64::MAX });
    let seconds = d / SECOND;
    if seconds < -1 {
        return "<invalid>".to_owned();
    } else if seconds < 0 {
        return "0s".to_owned();
    } else if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = d / MINUTE;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    } else if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = d / HOUR;
    if hours < 8 {
        let m = minutes % 60;
        if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        }
    } else if hours < 48 {
        format!("{hours}h")
    } else if hours < 24 * 8 {
        let h = hours % 24;
        if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        }
    } else if hours < 24 * 365 * 2 {
        format!("{}d", hours / 24)
    } else if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        }
    } else {
        format!("{}y", hours / 24 / 365)
    }
}

// ---------------------------------------------------------------------------------------
// Lenient JSON access
// ---------------------------------------------------------------------------------------

/// The value at `path` (object keys), if every step is an object holding the key.
fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter()
        .try_fold(v, |cur, key| cur.as_object()?.get(*key))
}

/// The string at `path`, "" when absent or not a string.
fn s<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    at(v, path).and_then(Value::as_str).unwrap_or("")
}

/// The integer at `path`, 0 when absent or not a number.
fn int(v: &Value, path: &[&str]) -> i64 {
    at(v, path).map_or(0, as_int)
}

fn as_int(v: &Value) -> i64 {
    if let Some(i) = v.as_i64() {
        i
    } else if v.as_u64().is_some() {
        i64::MAX
    } else {
        // `as` saturates, and maps NaN to 0.
        v.as_f64().map_or(0, |f| f as i64)
    }
}

/// The bool at `path`, false when absent or not a bool.
fn flag(v: &Value, path: &[&str]) -> bool {
    at(v, path).and_then(Value::as_bool).unwrap_or(false)
}

/// The array at `path`, empty when absent or not an array.
fn arr<'a>(v: &'a Value, path: &[&str]) -> &'a [Value] {
    at(v, path)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// The object at `path` (a set Go struct pointer), if it is one.
fn object<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    at(v, path).filter(|x| x.is_object())
}

/// Whether `path` holds something other than null (a set Go pointer).
fn present(v: &Value, path: &[&str]) -> bool {
    at(v, path).is_some_and(|x| !x.is_null())
}

/// The number of keys of the object at `path`, 0 when absent or not an object.
fn map_len(v: &Value, path: &[&str]) -> usize {
    at(v, path).and_then(Value::as_object).map_or(0, Map::len)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i128 = 1_000_000_000;

    #[test]
    fn human_duration_boundaries() {
        assert_eq!(human_duration(-2 * S), "<invalid>");
        // -1.999s truncates to -1s: still "now".
        assert_eq!(human_duration(-2 * S + 1), "0s");
        assert_eq!(human_duration(-1), "0s");
        assert_eq!(human_duration(0), "0s");
        assert_eq!(human_duration(S - 1), "0s");
        assert_eq!(human_duration(120 * S - 1), "119s");
        assert_eq!(human_duration(120 * S), "2m");
        assert_eq!(human_duration(121 * S), "2m1s");
        assert_eq!(human_duration(600 * S - 1), "9m59s");
        assert_eq!(human_duration(600 * S), "10m");
        assert_eq!(human_duration(3 * 3600 * S - 1), "179m");
        assert_eq!(human_duration(3 * 3600 * S), "3h");
        assert_eq!(human_duration((3 * 3600 + 60) * S), "3h1m");
        assert_eq!(human_duration(8 * 3600 * S), "8h");
        assert_eq!(human_duration(48 * 3600 * S - 1), "47h");
        assert_eq!(human_duration(48 * 3600 * S), "2d");
        assert_eq!(human_duration(49 * 3600 * S), "2d1h");
        assert_eq!(human_duration(8 * 24 * 3600 * S), "8d");
        assert_eq!(human_duration(2 * 365 * 24 * 3600 * S - 1), "729d");
        assert_eq!(human_duration(2 * 365 * 24 * 3600 * S), "2y");
        assert_eq!(human_duration(8 * 365 * 24 * 3600 * S), "8y");
        // Saturated like Go's time.Duration.
        assert_eq!(human_duration(i128::MAX), "292y");
        assert_eq!(human_duration(i128::MIN), "<invalid>");
    }

    #[test]
    fn go_zero_time_is_year_one() {
        assert_eq!(go_zero_time().to_string(), "0001-01-01T00:00:00Z");
        assert_eq!(time(&json!({"t": "0001-01-01T00:00:00Z"}), &["t"]), None);
        assert!(time(&json!({"t": "0001-01-01T00:00:01Z"}), &["t"]).is_some());
    }

    #[test]
    fn selectors_print_like_labels_selector_string() {
        let render = |v: Value| label_selector(Some(&v));
        assert_eq!(label_selector(None), Some(String::new()));
        assert_eq!(render(Value::Null), Some(String::new()));
        assert_eq!(render(json!({})), Some(String::new()));
        assert_eq!(
            render(json!({"matchLabels": null, "matchExpressions": null})),
            Some(String::new())
        );
        assert_eq!(
            render(json!({"matchLabels": {"b": "2", "a": "1"}})),
            Some("a=1,b=2".to_owned())
        );
        assert_eq!(
            render(json!({"matchLabels": {"app.kubernetes.io/name": ""}})),
            Some("app.kubernetes.io/name=".to_owned())
        );
        assert_eq!(
            render(json!({"matchExpressions": [
                {"key": "z", "operator": "In", "values": ["b", "a", "c"]},
                {"key": "y", "operator": "NotIn", "values": ["x"]},
            ]})),
            Some("y notin (x),z in (a,b,c)".to_owned())
        );
        // What upstream rejects.
        for bad in [
            json!({"matchLabels": {"a": 1}}),
            json!({"matchLabels": {"-a": "1"}}),
            json!({"matchLabels": {"a": "-1"}}),
            json!({"matchLabels": "a=1"}),
            json!({"matchExpressions": {"key": "a"}}),
            json!({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]}),
            json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}),
            json!({"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]}),
            json!({"matchExpressions": [{"operator": "Exists"}]}),
            json!({"matchExpressions": [{"key": "a", "operator": "In", "values": [true]}]}),
        ] {
            assert_eq!(render(bad.clone()), None, "{bad}");
        }
    }

    #[test]
    fn qualified_names_and_label_values() {
        for good in [
            "a",
            "app",
            "A.b-c_d9",
            "example.com/name",
            "kubernetes.io/role",
            &"x".repeat(63),
        ] {
            assert!(is_qualified_name(good), "{good}");
        }
        for bad in [
            "",
            "/a",
            "a/",
            "a/b/c",
            "-a",
            "a-",
            "Example.com/a",
            "a..b/c",
            "a b",
            &"x".repeat(64),
            "é",
        ] {
            assert!(!is_qualified_name(bad), "{bad}");
        }
        assert!(is_label_value(""));
        assert!(is_label_value("v1.2_3-x"));
        assert!(!is_label_value("_x"));
        assert!(!is_label_value(&"x".repeat(64)));
        assert!(is_dns1123_subdomain("a.b-c.d"));
        assert!(!is_dns1123_subdomain("a..b"));
        assert!(!is_dns1123_subdomain(&format!("{}.x", "a".repeat(253))));
    }

    #[test]
    fn endpoints_count_every_subset() {
        let endpoints = json!({"subsets": [
            {"addresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 80}]},
            {"addresses": [{"ip": "10.0.0.2"}, {"ip": "10.0.0.3"}], "ports": [{"port": 8080}, {"port": 9090}]},
        ]});
        assert_eq!(
            format_endpoints(&endpoints),
            "10.0.0.1:80,10.0.0.2:8080,10.0.0.3:8080 + 2 more..."
        );
        assert_eq!(format_endpoints(&json!({"subsets": []})), "<none>");
        assert_eq!(format_endpoints(&json!({"subsets": "x"})), "<none>");
        assert_eq!(join_host_port("::1", 443), "[::1]:443");
        assert_eq!(join_host_port("10.0.0.1", 443), "10.0.0.1:443");
    }

    #[test]
    fn rbac_rows_follow_upstream_printers() {
        let now: Timestamp = "2026-01-01T01:00:00Z".parse().unwrap();
        let role =
            json!({"metadata": {"name": "reader", "creationTimestamp": "2026-01-01T00:00:00Z"}});
        let t = table(
            "rbac.authorization.k8s.io",
            "ClusterRole",
            &[role],
            json!({}),
            "None",
            now,
        );
        let names: Vec<&Value> = t["columnDefinitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| &c["name"])
            .collect();
        assert_eq!(names, [&json!("Name"), &json!("Created At")]);
        assert_eq!(
            t["rows"][0]["cells"],
            json!(["reader", "2026-01-01T00:00:00Z"])
        );
        let bare = table(
            "rbac.authorization.k8s.io",
            "Role",
            &[json!({})],
            json!({}),
            "None",
            now,
        );
        assert_eq!(
            bare["rows"][0]["cells"],
            json!(["", "0001-01-01T00:00:00Z"])
        );

        let binding = json!({
            "metadata": {"name": "b", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "roleRef": {"kind": "ClusterRole", "name": "view"},
            "subjects": [
                {"kind": "User", "name": "u1"}, {"kind": "User", "name": "u2"},
                {"kind": "Group", "name": "g"},
                {"kind": "ServiceAccount", "name": "sa", "namespace": "ns"},
                {"kind": "Robot", "name": "r"}
            ]
        });
        for kind in ["RoleBinding", "ClusterRoleBinding"] {
            let t = table(
                "rbac.authorization.k8s.io",
                kind,
                std::slice::from_ref(&binding),
                json!({}),
                "None",
                now,
            );
            let columns = t["columnDefinitions"].as_array().unwrap();
            let names: Vec<&str> = columns
                .iter()
                .map(|c| c["name"].as_str().unwrap())
                .collect();
            assert_eq!(
                names,
                ["Name", "Role", "Age", "Users", "Groups", "ServiceAccounts"]
            );
            assert_eq!(columns[3]["priority"], 1);
            assert_eq!(
                t["rows"][0]["cells"],
                json!(["b", "ClusterRole/view", "60m", "u1, u2", "g", "ns/sa"])
            );
        }
    }

    #[test]
    fn lenient_access() {
        let v = json!({"a": {"b": [1, 2]}, "n": 18446744073709551615u64, "f": 2.9, "x": "s"});
        assert_eq!(arr(&v, &["a", "b"]).len(), 2);
        assert!(arr(&v, &["a", "b", "c"]).is_empty());
        assert_eq!(s(&v, &["x"]), "s");
        assert_eq!(s(&v, &["a"]), "");
        assert_eq!(int(&v, &["n"]), i64::MAX);
        assert_eq!(int(&v, &["f"]), 2);
        assert_eq!(int(&v, &["x"]), 0);
        assert!(!present(&json!({"p": null}), &["p"]));
        assert!(present(&json!({"p": {}}), &["p"]));
        assert_eq!(object(&json!({"p": "x"}), &["p"]), None);
        assert_eq!(map_len(&json!({"m": {"a": 1, "b": 2}}), &["m"]), 2);
        assert_eq!(map_len(&json!({"m": [1]}), &["m"]), 0);
    }
}
