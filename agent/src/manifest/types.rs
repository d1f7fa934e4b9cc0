//! Typed manifests: the Kubernetes subset Flotilla supports, with Kubernetes' field names.
//!
//! Every struct denies unknown fields, so a typo is an error that names its path rather than a
//! setting silently ignored. Structs default every field at the serde level; required fields are
//! checked by [`super::validate`], which reports all of them at once instead of serde's first.
//! `None` and empty lists are left out when serialised (see [`super::strip_empty`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// Declares a manifest struct with the serde attributes every one of them shares.
macro_rules! manifest_struct {
    ($(#[$m:meta])* pub struct $name:ident { $($(#[$fm:meta])* pub $f:ident : $t:ty,)* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
        #[serde(default, rename_all = "camelCase")]
        pub struct $name { $($(#[$fm])* pub $f: $t,)* }
    };
}

/// `int` or `string`, as Kubernetes' `IntOrString` (ports by name, `25%`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum IntOrString {
    Int(i64),
    Str(String),
}

impl Default for IntOrString {
    fn default() -> Self {
        IntOrString::Int(0)
    }
}

impl std::fmt::Display for IntOrString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IntOrString::Int(i) => write!(f, "{i}"),
            IntOrString::Str(s) => f.write_str(s),
        }
    }
}

/// A resource quantity (`500m`, `128Mi`, `1`), kept as written; YAML numbers become strings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Quantity(pub String);

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::String(s) => Ok(Quantity(s)),
            Value::Number(n) => Ok(Quantity(n.to_string())),
            other => Err(serde::de::Error::custom(format!(
                "invalid type: {}, expected a quantity such as \"500m\" or \"128Mi\"",
                super::describe_value(&other)
            ))),
        }
    }
}

manifest_struct! {
    /// `metadata` of every object.
    pub struct ObjectMeta {
        pub name: String,
        pub generate_name: Option<String>,
        pub namespace: Option<String>,
        pub labels: BTreeMap<String, String>,
        pub annotations: BTreeMap<String, String>,
        pub uid: Option<String>,
        pub resource_version: Option<String>,
        pub generation: Option<i64>,
        pub creation_timestamp: Option<String>,
        pub deletion_timestamp: Option<String>,
        pub deletion_grace_period_seconds: Option<i64>,
        pub owner_references: Vec<OwnerReference>,
        /// Honoured: a deleted object with finalizers stays, marked, until they are removed.
        pub finalizers: Vec<String>,
        /// Written by the API (who changed the object, and when); what a client sends is
        /// replaced by the API's own entry.
        pub managed_fields: Vec<serde_json::Value>,
    }
}

manifest_struct! {
    pub struct OwnerReference {
        pub api_version: String,
        pub kind: String,
        pub name: String,
        pub uid: String,
        pub controller: Option<bool>,
        pub block_owner_deletion: Option<bool>,
    }
}

/// An object with `spec` (every kind but ConfigMap and Secret).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Object<S> {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: S,
    /// Written by controllers and nodes only; ignored on user writes.
    pub status: Option<Value>,
}

pub type Pod = Object<PodSpec>;
pub type Deployment = Object<DeploymentSpec>;
pub type ReplicaSet = Object<ReplicaSetSpec>;
pub type DaemonSet = Object<DaemonSetSpec>;
pub type Job = Object<JobSpec>;
pub type Service = Object<ServiceSpec>;
pub type Namespace = Object<NamespaceSpec>;

manifest_struct! {
    pub struct NamespaceSpec {
        pub finalizers: Vec<String>,
    }
}

manifest_struct! {
    pub struct ConfigMap {
        pub api_version: String,
        pub kind: String,
        pub metadata: ObjectMeta,
        pub data: BTreeMap<String, String>,
        pub binary_data: BTreeMap<String, String>,
        pub immutable: Option<bool>,
    }
}

manifest_struct! {
    pub struct Secret {
        pub api_version: String,
        pub kind: String,
        pub metadata: ObjectMeta,
        #[serde(rename = "type")]
        pub type_: Option<String>,
        /// Base64-encoded values, as in Kubernetes.
        pub data: BTreeMap<String, String>,
        /// Plain values, merged into `data` when written.
        pub string_data: BTreeMap<String, String>,
        pub immutable: Option<bool>,
    }
}

manifest_struct! {
    pub struct PodTemplateSpec {
        pub metadata: ObjectMeta,
        pub spec: PodSpec,
    }
}

manifest_struct! {
    pub struct PodSpec {
        pub containers: Vec<Container>,
        pub init_containers: Vec<Container>,
        pub volumes: Vec<Volume>,
        pub restart_policy: Option<String>,
        pub node_selector: BTreeMap<String, String>,
        pub node_name: Option<String>,
        pub tolerations: Vec<Toleration>,
        pub affinity: Option<Affinity>,
        pub topology_spread_constraints: Vec<TopologySpreadConstraint>,
        pub termination_grace_period_seconds: Option<i64>,
        pub active_deadline_seconds: Option<i64>,
        pub hostname: Option<String>,
        pub subdomain: Option<String>,
        pub host_network: Option<bool>,
        pub dns_policy: Option<String>,
        pub service_account_name: Option<String>,
        pub priority: Option<i32>,
        pub enable_service_links: Option<bool>,
    }
}

manifest_struct! {
    pub struct Container {
        pub name: String,
        pub image: String,
        pub image_pull_policy: Option<String>,
        pub command: Vec<String>,
        pub args: Vec<String>,
        pub working_dir: Option<String>,
        pub env: Vec<EnvVar>,
        pub env_from: Vec<EnvFromSource>,
        pub ports: Vec<ContainerPort>,
        pub resources: ResourceRequirements,
        pub volume_mounts: Vec<VolumeMount>,
        pub liveness_probe: Option<Probe>,
        pub readiness_probe: Option<Probe>,
        pub startup_probe: Option<Probe>,
        pub lifecycle: Option<Lifecycle>,
        pub security_context: Option<SecurityContext>,
        pub stdin: Option<bool>,
        pub tty: Option<bool>,
        pub termination_message_path: Option<String>,
        pub termination_message_policy: Option<String>,
    }
}

manifest_struct! {
    pub struct SecurityContext {
        pub run_as_user: Option<i64>,
        pub run_as_group: Option<i64>,
        pub run_as_non_root: Option<bool>,
        pub read_only_root_filesystem: Option<bool>,
        pub allow_privilege_escalation: Option<bool>,
        pub privileged: Option<bool>,
    }
}

manifest_struct! {
    pub struct EnvVar {
        pub name: String,
        pub value: Option<String>,
        pub value_from: Option<EnvVarSource>,
    }
}

manifest_struct! {
    pub struct EnvVarSource {
        pub config_map_key_ref: Option<KeySelector>,
        pub secret_key_ref: Option<KeySelector>,
        pub field_ref: Option<FieldSelector>,
    }
}

manifest_struct! {
    pub struct KeySelector {
        pub name: String,
        pub key: String,
        pub optional: Option<bool>,
    }
}

manifest_struct! {
    pub struct FieldSelector {
        pub api_version: Option<String>,
        pub field_path: String,
    }
}

manifest_struct! {
    pub struct EnvFromSource {
        pub prefix: Option<String>,
        pub config_map_ref: Option<NameRef>,
        pub secret_ref: Option<NameRef>,
    }
}

manifest_struct! {
    pub struct NameRef {
        pub name: String,
        pub optional: Option<bool>,
    }
}

manifest_struct! {
    pub struct ContainerPort {
        pub name: Option<String>,
        pub container_port: i64,
        pub host_port: Option<i64>,
        #[serde(rename = "hostIP")]
        pub host_ip: Option<String>,
        pub protocol: Option<String>,
    }
}

manifest_struct! {
    pub struct ResourceRequirements {
        pub limits: BTreeMap<String, Quantity>,
        pub requests: BTreeMap<String, Quantity>,
    }
}

manifest_struct! {
    pub struct VolumeMount {
        pub name: String,
        pub mount_path: String,
        pub read_only: Option<bool>,
        pub sub_path: Option<String>,
    }
}

manifest_struct! {
    pub struct Probe {
        pub exec: Option<ExecAction>,
        pub http_get: Option<HttpGetAction>,
        pub tcp_socket: Option<TcpSocketAction>,
        pub initial_delay_seconds: Option<i64>,
        pub period_seconds: Option<i64>,
        pub timeout_seconds: Option<i64>,
        pub failure_threshold: Option<i64>,
        pub success_threshold: Option<i64>,
        pub termination_grace_period_seconds: Option<i64>,
    }
}

manifest_struct! {
    pub struct ExecAction {
        pub command: Vec<String>,
    }
}

manifest_struct! {
    pub struct HttpGetAction {
        pub path: Option<String>,
        pub port: IntOrString,
        pub host: Option<String>,
        pub scheme: Option<String>,
        pub http_headers: Vec<HttpHeader>,
    }
}

manifest_struct! {
    pub struct HttpHeader {
        pub name: String,
        pub value: String,
    }
}

manifest_struct! {
    pub struct TcpSocketAction {
        pub port: IntOrString,
        pub host: Option<String>,
    }
}

manifest_struct! {
    pub struct Lifecycle {
        pub post_start: Option<LifecycleHandler>,
        pub pre_stop: Option<LifecycleHandler>,
    }
}

manifest_struct! {
    pub struct LifecycleHandler {
        pub exec: Option<ExecAction>,
        pub http_get: Option<HttpGetAction>,
        pub tcp_socket: Option<TcpSocketAction>,
    }
}

manifest_struct! {
    pub struct Volume {
        pub name: String,
        pub empty_dir: Option<EmptyDirVolume>,
        pub host_path: Option<HostPathVolume>,
        pub config_map: Option<ConfigMapVolume>,
        pub secret: Option<SecretVolume>,
    }
}

manifest_struct! {
    pub struct EmptyDirVolume {
        pub medium: Option<String>,
        pub size_limit: Option<Quantity>,
    }
}

manifest_struct! {
    pub struct HostPathVolume {
        pub path: String,
        #[serde(rename = "type")]
        pub type_: Option<String>,
    }
}

manifest_struct! {
    pub struct KeyToPath {
        pub key: String,
        pub path: String,
        pub mode: Option<i64>,
    }
}

manifest_struct! {
    pub struct ConfigMapVolume {
        pub name: String,
        pub items: Vec<KeyToPath>,
        pub default_mode: Option<i64>,
        pub optional: Option<bool>,
    }
}

manifest_struct! {
    pub struct SecretVolume {
        pub secret_name: String,
        pub items: Vec<KeyToPath>,
        pub default_mode: Option<i64>,
        pub optional: Option<bool>,
    }
}

manifest_struct! {
    pub struct Toleration {
        pub key: Option<String>,
        pub operator: Option<String>,
        pub value: Option<String>,
        pub effect: Option<String>,
        pub toleration_seconds: Option<i64>,
    }
}

manifest_struct! {
    /// Node affinity only: pod (anti-)affinity is not supported and is refused as an unknown
    /// field rather than ignored.
    pub struct Affinity {
        pub node_affinity: Option<NodeAffinity>,
    }
}

manifest_struct! {
    pub struct NodeAffinity {
        pub required_during_scheduling_ignored_during_execution: Option<NodeSelector>,
        pub preferred_during_scheduling_ignored_during_execution: Vec<PreferredSchedulingTerm>,
    }
}

manifest_struct! {
    /// Terms ORed; within a term, every requirement must hold.
    pub struct NodeSelector {
        pub node_selector_terms: Vec<NodeSelectorTerm>,
    }
}

manifest_struct! {
    pub struct NodeSelectorTerm {
        pub match_expressions: Vec<NodeSelectorRequirement>,
        pub match_fields: Vec<NodeSelectorRequirement>,
    }
}

manifest_struct! {
    /// Operators In, NotIn, Exists, DoesNotExist, Gt, Lt (evaluated by
    /// [`crate::scheduler::affinity`]).
    pub struct NodeSelectorRequirement {
        pub key: String,
        pub operator: String,
        pub values: Vec<String>,
    }
}

manifest_struct! {
    pub struct PreferredSchedulingTerm {
        pub weight: i64,
        pub preference: NodeSelectorTerm,
    }
}

manifest_struct! {
    pub struct TopologySpreadConstraint {
        pub max_skew: i64,
        pub topology_key: String,
        pub when_unsatisfiable: String,
        pub label_selector: Option<LabelSelector>,
    }
}

manifest_struct! {
    /// `matchLabels` and `matchExpressions`, evaluated by [`crate::manifest::selector`].
    pub struct LabelSelector {
        pub match_labels: BTreeMap<String, String>,
        pub match_expressions: Vec<LabelSelectorRequirement>,
    }
}

manifest_struct! {
    pub struct LabelSelectorRequirement {
        pub key: String,
        pub operator: String,
        pub values: Vec<String>,
    }
}

manifest_struct! {
    pub struct DeploymentSpec {
        pub replicas: Option<i64>,
        pub selector: Option<LabelSelector>,
        pub template: PodTemplateSpec,
        pub strategy: Option<DeploymentStrategy>,
        pub min_ready_seconds: Option<i64>,
        pub revision_history_limit: Option<i64>,
        pub paused: Option<bool>,
        pub progress_deadline_seconds: Option<i64>,
    }
}

manifest_struct! {
    pub struct DeploymentStrategy {
        #[serde(rename = "type")]
        pub type_: Option<String>,
        pub rolling_update: Option<RollingUpdate>,
    }
}

manifest_struct! {
    pub struct RollingUpdate {
        pub max_surge: Option<IntOrString>,
        pub max_unavailable: Option<IntOrString>,
    }
}

manifest_struct! {
    pub struct ReplicaSetSpec {
        pub replicas: Option<i64>,
        pub selector: Option<LabelSelector>,
        pub template: PodTemplateSpec,
        pub min_ready_seconds: Option<i64>,
    }
}

manifest_struct! {
    pub struct DaemonSetSpec {
        pub selector: Option<LabelSelector>,
        pub template: PodTemplateSpec,
        pub update_strategy: Option<DeploymentStrategy>,
        pub min_ready_seconds: Option<i64>,
        pub revision_history_limit: Option<i64>,
    }
}

manifest_struct! {
    pub struct JobSpec {
        pub completions: Option<i64>,
        pub parallelism: Option<i64>,
        pub backoff_limit: Option<i64>,
        pub active_deadline_seconds: Option<i64>,
        pub selector: Option<LabelSelector>,
        pub manual_selector: Option<bool>,
        pub template: PodTemplateSpec,
        pub ttl_seconds_after_finished: Option<i64>,
    }
}

manifest_struct! {
    pub struct ServiceSpec {
        #[serde(rename = "type")]
        pub type_: Option<String>,
        pub selector: BTreeMap<String, String>,
        pub ports: Vec<ServicePort>,
        #[serde(rename = "clusterIP")]
        pub cluster_ip: Option<String>,
        #[serde(rename = "clusterIPs")]
        pub cluster_ips: Vec<String>,
        pub session_affinity: Option<String>,
        pub session_affinity_config: Option<SessionAffinityConfig>,
        pub external_traffic_policy: Option<String>,
        pub internal_traffic_policy: Option<String>,
        pub publish_not_ready_addresses: Option<bool>,
    }
}

manifest_struct! {
    pub struct ServicePort {
        pub name: Option<String>,
        pub protocol: Option<String>,
        pub port: i64,
        pub target_port: Option<IntOrString>,
        pub node_port: Option<i64>,
        pub app_protocol: Option<String>,
    }
}

manifest_struct! {
    pub struct SessionAffinityConfig {
        #[serde(rename = "clientIP")]
        pub client_ip: Option<ClientIpConfig>,
    }
}

manifest_struct! {
    pub struct ClientIpConfig {
        pub timeout_seconds: Option<i64>,
    }
}
