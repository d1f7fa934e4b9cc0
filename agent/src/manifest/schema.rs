//! Kubernetes' schemas of the served kinds, and strict checking of a document against them.
//!
//! The schemas come from k8s-openapi's own types (its `schemars` feature, the OpenAPI
//! documents of the Kubernetes version the API reports), generated at build time (`build.rs`),
//! embedded compressed and read once per process. The same
//! definitions are served as the API's OpenAPI documents (`/openapi/v3`), so kubectl's
//! `explain` and client-side checks see exactly what the agent judges by.
//!
//! [`check`] walks one document beside its kind's schema and finds, in one pass and all at
//! once: fields Kubernetes does not know (*unknown*), fields Kubernetes knows and Flotilla does
//! not implement yet (*not supported*, from the [`SUPPORTED`] table), and values of the wrong
//! type. It leaves the document decodable: unknown and unsupported fields are taken out, a
//! bad value is taken out (or, in a list, replaced by a value of the expected type), and
//! `null` means unset, as in Kubernetes. Pure functions of data.

use std::sync::LazyLock;

use serde_json::{Map, Value};

use super::{FieldError, KindInfo, Unknown, describe_value};

/// Where definitions live in an OpenAPI v3 document, as `$ref`s name them.
pub const REF_PREFIX: &str = "#/components/schemas/";

/// The definitions of every served kind and of every type they use, by their Kubernetes name
/// (`io.k8s.api.core.v1.Pod`).
pub struct Schemas {
    pub defs: Map<String, Value>,
}

impl Schemas {
    /// The definition of a kind (named in its row of the kinds table), if generated.
    pub fn of(&self, kind: &KindInfo) -> Option<(&'static str, &Value)> {
        self.defs.get(kind.schema).map(|d| (kind.schema, d))
    }
}

static SCHEMAS: LazyLock<Schemas> = LazyLock::new(|| {
    // Inflated whole, then parsed: serde_json reading through the decoder byte by byte cost
    // every CLI apply 30 ms.
    let z: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/k8s-schemas.json.z"));
    let mut json = Vec::with_capacity(z.len() * 6);
    std::io::Read::read_to_end(&mut flate2::read::ZlibDecoder::new(z), &mut json)
        .expect("build.rs writes zlib");
    let mut defs: Map<String, Value> =
        serde_json::from_slice(&json).expect("build.rs writes a JSON map");
    super::strategic::annotate(&mut defs);
    Schemas { defs }
});

/// The schemas, generated on first use.
pub fn schemas() -> &'static Schemas {
    &SCHEMAS
}

/// The fields Flotilla implements, per Kubernetes definition. A field Kubernetes has and this
/// table does not list is refused as "not supported by Flotilla yet"; a definition missing from
/// the table has no supported field. Adding a field is a word here plus its behaviour.
pub const SUPPORTED: &[(&str, &[&str])] = &[
    (
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        &[
            "name",
            "generateName",
            "namespace",
            "labels",
            "annotations",
            "uid",
            "resourceVersion",
            "generation",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "ownerReferences",
            "finalizers",
            "managedFields",
        ],
    ),
    (
        "io.k8s.apimachinery.pkg.apis.meta.v1.OwnerReference",
        &[
            "apiVersion",
            "kind",
            "name",
            "uid",
            "controller",
            "blockOwnerDeletion",
        ],
    ),
    (
        "io.k8s.apimachinery.pkg.apis.meta.v1.ManagedFieldsEntry",
        &[
            "manager",
            "operation",
            "apiVersion",
            "time",
            "fieldsType",
            "fieldsV1",
            "subresource",
        ],
    ),
    (
        "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector",
        &["matchLabels", "matchExpressions"],
    ),
    (
        "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelectorRequirement",
        &["key", "operator", "values"],
    ),
    (
        "io.k8s.api.core.v1.Namespace",
        &["apiVersion", "kind", "metadata", "spec"],
    ),
    ("io.k8s.api.core.v1.NamespaceSpec", &["finalizers"]),
    (
        "io.k8s.api.core.v1.ConfigMap",
        &[
            "apiVersion",
            "kind",
            "metadata",
            "data",
            "binaryData",
            "immutable",
        ],
    ),
    (
        "io.k8s.api.core.v1.Secret",
        &[
            "apiVersion",
            "kind",
            "metadata",
            "type",
            "data",
            "stringData",
            "immutable",
        ],
    ),
    (
        "io.k8s.api.core.v1.Pod",
        &["apiVersion", "kind", "metadata", "spec"],
    ),
    ("io.k8s.api.core.v1.PodTemplateSpec", &["metadata", "spec"]),
    (
        "io.k8s.api.core.v1.PodSpec",
        &[
            "containers",
            "initContainers",
            "volumes",
            "restartPolicy",
            "nodeSelector",
            "nodeName",
            "tolerations",
            "affinity",
            "topologySpreadConstraints",
            "terminationGracePeriodSeconds",
            "activeDeadlineSeconds",
            "hostname",
            "subdomain",
            "hostNetwork",
            "dnsPolicy",
            "serviceAccountName",
            "priority",
            "enableServiceLinks",
        ],
    ),
    (
        "io.k8s.api.core.v1.Container",
        &[
            "name",
            "image",
            "imagePullPolicy",
            "command",
            "args",
            "workingDir",
            "env",
            "envFrom",
            "ports",
            "resources",
            "volumeMounts",
            "livenessProbe",
            "readinessProbe",
            "startupProbe",
            "lifecycle",
            "securityContext",
            "stdin",
            "tty",
            "terminationMessagePath",
            "terminationMessagePolicy",
        ],
    ),
    (
        "io.k8s.api.core.v1.SecurityContext",
        &[
            "runAsUser",
            "runAsGroup",
            "runAsNonRoot",
            "readOnlyRootFilesystem",
            "allowPrivilegeEscalation",
            "privileged",
        ],
    ),
    ("io.k8s.api.core.v1.EnvVar", &["name", "value", "valueFrom"]),
    (
        "io.k8s.api.core.v1.EnvVarSource",
        &["configMapKeyRef", "secretKeyRef", "fieldRef"],
    ),
    (
        "io.k8s.api.core.v1.ConfigMapKeySelector",
        &["name", "key", "optional"],
    ),
    (
        "io.k8s.api.core.v1.SecretKeySelector",
        &["name", "key", "optional"],
    ),
    (
        "io.k8s.api.core.v1.ObjectFieldSelector",
        &["apiVersion", "fieldPath"],
    ),
    (
        "io.k8s.api.core.v1.EnvFromSource",
        &["prefix", "configMapRef", "secretRef"],
    ),
    (
        "io.k8s.api.core.v1.ConfigMapEnvSource",
        &["name", "optional"],
    ),
    ("io.k8s.api.core.v1.SecretEnvSource", &["name", "optional"]),
    (
        "io.k8s.api.core.v1.ContainerPort",
        &["name", "containerPort", "hostPort", "hostIP", "protocol"],
    ),
    (
        "io.k8s.api.core.v1.ResourceRequirements",
        &["limits", "requests"],
    ),
    (
        "io.k8s.api.core.v1.VolumeMount",
        &["name", "mountPath", "readOnly", "subPath"],
    ),
    (
        "io.k8s.api.core.v1.Probe",
        &[
            "exec",
            "httpGet",
            "tcpSocket",
            "initialDelaySeconds",
            "periodSeconds",
            "timeoutSeconds",
            "failureThreshold",
            "successThreshold",
            "terminationGracePeriodSeconds",
        ],
    ),
    ("io.k8s.api.core.v1.ExecAction", &["command"]),
    (
        "io.k8s.api.core.v1.HTTPGetAction",
        &["path", "port", "host", "scheme", "httpHeaders"],
    ),
    ("io.k8s.api.core.v1.HTTPHeader", &["name", "value"]),
    ("io.k8s.api.core.v1.TCPSocketAction", &["port", "host"]),
    // postStart, and preStop by httpGet or tcpSocket, are not run yet: refused, not ignored.
    ("io.k8s.api.core.v1.Lifecycle", &["preStop"]),
    ("io.k8s.api.core.v1.LifecycleHandler", &["exec", "sleep"]),
    ("io.k8s.api.core.v1.SleepAction", &["seconds"]),
    (
        "io.k8s.api.core.v1.Volume",
        &["name", "emptyDir", "hostPath", "configMap", "secret"],
    ),
    (
        "io.k8s.api.core.v1.EmptyDirVolumeSource",
        &["medium", "sizeLimit"],
    ),
    ("io.k8s.api.core.v1.HostPathVolumeSource", &["path", "type"]),
    ("io.k8s.api.core.v1.KeyToPath", &["key", "path", "mode"]),
    (
        "io.k8s.api.core.v1.ConfigMapVolumeSource",
        &["name", "items", "defaultMode", "optional"],
    ),
    (
        "io.k8s.api.core.v1.SecretVolumeSource",
        &["secretName", "items", "defaultMode", "optional"],
    ),
    (
        "io.k8s.api.core.v1.Toleration",
        &["key", "operator", "value", "effect", "tolerationSeconds"],
    ),
    ("io.k8s.api.core.v1.Affinity", &["nodeAffinity"]),
    (
        "io.k8s.api.core.v1.NodeAffinity",
        &[
            "requiredDuringSchedulingIgnoredDuringExecution",
            "preferredDuringSchedulingIgnoredDuringExecution",
        ],
    ),
    ("io.k8s.api.core.v1.NodeSelector", &["nodeSelectorTerms"]),
    (
        "io.k8s.api.core.v1.NodeSelectorTerm",
        &["matchExpressions", "matchFields"],
    ),
    (
        "io.k8s.api.core.v1.NodeSelectorRequirement",
        &["key", "operator", "values"],
    ),
    (
        "io.k8s.api.core.v1.PreferredSchedulingTerm",
        &["weight", "preference"],
    ),
    (
        "io.k8s.api.core.v1.TopologySpreadConstraint",
        &[
            "maxSkew",
            "topologyKey",
            "whenUnsatisfiable",
            "labelSelector",
        ],
    ),
    (
        "io.k8s.api.apps.v1.Deployment",
        &["apiVersion", "kind", "metadata", "spec"],
    ),
    (
        "io.k8s.api.apps.v1.DeploymentSpec",
        &[
            "replicas",
            "selector",
            "template",
            "strategy",
            "minReadySeconds",
            "revisionHistoryLimit",
            "paused",
            "progressDeadlineSeconds",
        ],
    ),
    (
        "io.k8s.api.apps.v1.DeploymentStrategy",
        &["type", "rollingUpdate"],
    ),
    (
        "io.k8s.api.apps.v1.RollingUpdateDeployment",
        &["maxSurge", "maxUnavailable"],
    ),
    (
        "io.k8s.api.apps.v1.ReplicaSet",
        &["apiVersion", "kind", "metadata", "spec"],
    ),
    (
        "io.k8s.api.apps.v1.ReplicaSetSpec",
        &["replicas", "selector", "template", "minReadySeconds"],
    ),
    (
        "io.k8s.api.apps.v1.DaemonSet",
        &["apiVersion", "kind", "metadata", "spec"],
    ),
    (
        "io.k8s.api.apps.v1.DaemonSetSpec",
        &[
            "selector",
            "template",
            "updateStrategy",
            "minReadySeconds",
            "revisionHistoryLimit",
        ],
    ),
    (
        "io.k8s.api.apps.v1.DaemonSetUpdateStrategy",
        &["type", "rollingUpdate"],
    ),
    (
        "io.k8s.api.apps.v1.RollingUpdateDaemonSet",
        &["maxSurge", "maxUnavailable"],
    ),
    (
        "io.k8s.api.batch.v1.Job",
        &["apiVersion", "kind", "metadata", "spec"],
    ),
    (
        "io.k8s.api.batch.v1.JobSpec",
        &[
            "completions",
            "parallelism",
            "backoffLimit",
            "activeDeadlineSeconds",
            "selector",
            "manualSelector",
            "template",
            "ttlSecondsAfterFinished",
            "suspend",
            "completionMode",
            "podFailurePolicy",
        ],
    ),
    ("io.k8s.api.batch.v1.PodFailurePolicy", &["rules"]),
    (
        "io.k8s.api.batch.v1.PodFailurePolicyRule",
        &["action", "onExitCodes", "onPodConditions"],
    ),
    (
        "io.k8s.api.batch.v1.PodFailurePolicyOnExitCodesRequirement",
        &["containerName", "operator", "values"],
    ),
    (
        "io.k8s.api.batch.v1.PodFailurePolicyOnPodConditionsPattern",
        &["type", "status"],
    ),
    (
        "io.k8s.api.core.v1.ReplicationController",
        &["apiVersion", "kind", "metadata", "spec"],
    ),
    (
        "io.k8s.api.core.v1.ReplicationControllerSpec",
        &["replicas", "selector", "template", "minReadySeconds"],
    ),
    (
        "io.k8s.api.batch.v1.CronJob",
        &["apiVersion", "kind", "metadata", "spec"],
    ),
    (
        "io.k8s.api.batch.v1.CronJobSpec",
        &[
            "schedule",
            "timeZone",
            "startingDeadlineSeconds",
            "concurrencyPolicy",
            "suspend",
            "jobTemplate",
            "successfulJobsHistoryLimit",
            "failedJobsHistoryLimit",
        ],
    ),
    ("io.k8s.api.batch.v1.JobTemplateSpec", &["metadata", "spec"]),
    (
        "io.k8s.api.autoscaling.v2.HorizontalPodAutoscaler",
        &["apiVersion", "kind", "metadata", "spec"],
    ),
    (
        "io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerSpec",
        &[
            "scaleTargetRef",
            "minReplicas",
            "maxReplicas",
            "metrics",
            "behavior",
        ],
    ),
    (
        "io.k8s.api.autoscaling.v2.CrossVersionObjectReference",
        &["apiVersion", "kind", "name"],
    ),
    // Resource metrics only: Pods, Object, External and ContainerResource metrics need a
    // custom or external metrics API.
    (
        "io.k8s.api.autoscaling.v2.MetricSpec",
        &["type", "resource"],
    ),
    (
        "io.k8s.api.autoscaling.v2.ResourceMetricSource",
        &["name", "target"],
    ),
    (
        "io.k8s.api.autoscaling.v2.MetricTarget",
        &["type", "averageUtilization", "averageValue", "value"],
    ),
    (
        "io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerBehavior",
        &["scaleUp", "scaleDown"],
    ),
    (
        "io.k8s.api.autoscaling.v2.HPAScalingRules",
        &["stabilizationWindowSeconds", "selectPolicy", "policies"],
    ),
    (
        "io.k8s.api.autoscaling.v2.HPAScalingPolicy",
        &["type", "value", "periodSeconds"],
    ),
    (
        "io.k8s.api.core.v1.Service",
        &["apiVersion", "kind", "metadata", "spec"],
    ),
    (
        "io.k8s.api.core.v1.ServiceSpec",
        &[
            "type",
            "selector",
            "ports",
            "clusterIP",
            "clusterIPs",
            "sessionAffinity",
            "sessionAffinityConfig",
            "externalTrafficPolicy",
            "internalTrafficPolicy",
            "publishNotReadyAddresses",
        ],
    ),
    (
        "io.k8s.api.core.v1.ServicePort",
        &[
            "name",
            "protocol",
            "port",
            "targetPort",
            "nodePort",
            "appProtocol",
        ],
    ),
    ("io.k8s.api.core.v1.SessionAffinityConfig", &["clientIP"]),
    // The reviews (api/review.rs): every caller is the administrator, so each attribute is
    // answered (allowed) whatever it names. Selectors on a review (alpha in 1.31) are not.
    (
        "io.k8s.api.authorization.v1.SelfSubjectAccessReview",
        &["apiVersion", "kind", "metadata", "spec"],
    ),
    (
        "io.k8s.api.authorization.v1.SelfSubjectAccessReviewSpec",
        &["resourceAttributes", "nonResourceAttributes"],
    ),
    (
        "io.k8s.api.authorization.v1.ResourceAttributes",
        &[
            "namespace",
            "verb",
            "group",
            "version",
            "resource",
            "subresource",
            "name",
        ],
    ),
    (
        "io.k8s.api.authorization.v1.NonResourceAttributes",
        &["path", "verb"],
    ),
    (
        "io.k8s.api.authorization.v1.SelfSubjectRulesReview",
        &["apiVersion", "kind", "metadata", "spec"],
    ),
    (
        "io.k8s.api.authorization.v1.SelfSubjectRulesReviewSpec",
        &["namespace"],
    ),
    (
        "io.k8s.api.authentication.v1.SelfSubjectReview",
        &["apiVersion", "kind", "metadata"],
    ),
    ("io.k8s.api.core.v1.ClientIPConfig", &["timeoutSeconds"]),
];

fn supported(def: &str) -> &'static [&'static str] {
    SUPPORTED
        .iter()
        .find(|(d, _)| *d == def)
        .map(|(_, f)| *f)
        .unwrap_or(&[])
}

/// What [`check`] found.
#[derive(Debug, Default)]
pub struct Checked {
    /// Type errors first, then unknown and unsupported fields in the document's order.
    pub errors: Vec<FieldError>,
    /// Unknown fields left out (only with [`Unknown::Drop`]).
    pub dropped: Vec<String>,
}

/// Checks `doc` against the schema of `kind`, taking out what cannot be decoded (see the
/// module). A kind without a schema is not checked.
pub fn check(kind: &KindInfo, doc: &mut Value, unknown: Unknown) -> Checked {
    let s = schemas();
    let mut w = Walk {
        defs: &s.defs,
        unknown,
        types: Vec::new(),
        fields: Vec::new(),
        dropped: Vec::new(),
    };
    if let Some((name, schema)) = s.of(kind) {
        w.resolved(schema, Some(name), doc, &mut String::new());
    }
    let mut errors = w.types;
    errors.extend(w.fields);
    Checked {
        errors,
        dropped: w.dropped,
    }
}

struct Walk {
    defs: &'static Map<String, Value>,
    unknown: Unknown,
    types: Vec<FieldError>,
    fields: Vec<FieldError>,
    dropped: Vec<String>,
}

/// What a value must be.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    Any,
    IntOrString { quantity: bool },
    String { date_time: bool, byte: bool },
    Integer { int32: bool },
    Number,
    Boolean,
    Array,
    Object,
}

impl Expect {
    fn words(self) -> &'static str {
        match self {
            Expect::Any => "anything",
            Expect::IntOrString { quantity: true } => "a quantity such as \"500m\" or \"128Mi\"",
            Expect::IntOrString { quantity: false } => "an integer or a string",
            Expect::String {
                date_time: true, ..
            } => "a time such as \"2026-01-02T15:04:05Z\"",
            Expect::String { byte: true, .. } => "base64-encoded bytes",
            Expect::String { .. } => "a string",
            Expect::Integer { int32: true } => "an integer (int32)",
            Expect::Integer { int32: false } => "an integer",
            Expect::Number => "a number",
            Expect::Boolean => "a boolean",
            Expect::Array => "a list",
            Expect::Object => "a map",
        }
    }

    /// A value of this kind, to stand where a bad one was in a list.
    fn stand_in(self) -> Value {
        match self {
            Expect::String { .. } => Value::from(""),
            Expect::Integer { .. } | Expect::Number | Expect::IntOrString { .. } => Value::from(0),
            Expect::Boolean => Value::from(false),
            Expect::Array => Value::Array(Vec::new()),
            Expect::Object | Expect::Any => Value::Object(Map::new()),
        }
    }
}

/// Renders a bad value as serde does (`string "three"`, `integer 5`), for the message.
fn shown(v: &Value) -> String {
    match v {
        Value::String(s) => format!("string {s:?}"),
        Value::Number(n) if n.is_f64() => format!("floating point `{n}`"),
        Value::Number(n) => format!("integer `{n}`"),
        Value::Bool(b) => format!("boolean `{b}`"),
        other => describe_value(other).to_string(),
    }
}

impl Walk {
    /// Follows `$ref` and one-element `allOf` to the schema itself, with the definition name
    /// when it came from one.
    fn resolve(&self, mut schema: &'static Value) -> (&'static Value, Option<&'static str>) {
        let mut def = None;
        for _ in 0..8 {
            if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
                let name = r.trim_start_matches(REF_PREFIX);
                match self.defs.get_key_value(name) {
                    Some((k, s)) => {
                        def = Some(k.as_str());
                        schema = s;
                    }
                    None => break,
                }
            } else if let Some([one]) = schema
                .get("allOf")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
            {
                schema = one;
            } else {
                break;
            }
        }
        (schema, def)
    }

    fn expect(schema: &Value, def: Option<&str>) -> Expect {
        if schema.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
            return Expect::IntOrString {
                quantity: def.is_some_and(|d| d.ends_with(".resource.Quantity")),
            };
        }
        let format = schema.get("format").and_then(Value::as_str);
        match schema.get("type").and_then(Value::as_str) {
            Some("string") => Expect::String {
                date_time: format == Some("date-time"),
                byte: format == Some("byte"),
            },
            Some("integer") => Expect::Integer {
                int32: format == Some("int32"),
            },
            Some("number") => Expect::Number,
            Some("boolean") => Expect::Boolean,
            Some("array") => Expect::Array,
            Some("object") => Expect::Object,
            _ if schema.get("properties").is_some() => Expect::Object,
            _ => Expect::Any,
        }
    }

    /// Whether `v` is what `e` asks for; a quantity written as a YAML number becomes its
    /// string, as Kubernetes reads it.
    fn fits(e: Expect, v: &mut Value) -> bool {
        match (e, &*v) {
            (Expect::Any, _) => true,
            (Expect::IntOrString { quantity: true }, Value::Number(n)) => {
                *v = Value::String(n.to_string());
                true
            }
            (Expect::IntOrString { .. }, Value::String(_)) => true,
            (Expect::IntOrString { quantity: false }, Value::Number(n)) => {
                n.as_i64().is_some_and(|i| i32::try_from(i).is_ok())
            }
            (
                Expect::String {
                    date_time: true, ..
                },
                Value::String(s),
            ) => chrono::DateTime::parse_from_rfc3339(s).is_ok(),
            (Expect::String { byte: true, .. }, Value::String(s)) => {
                use base64::Engine as _;
                base64::engine::general_purpose::STANDARD.decode(s).is_ok()
            }
            (Expect::String { .. }, Value::String(_)) => true,
            (Expect::Integer { int32 }, Value::Number(n)) => match n.as_i64() {
                Some(i) => !int32 || i32::try_from(i).is_ok(),
                None => false,
            },
            (Expect::Number, Value::Number(_)) => true,
            (Expect::Boolean, Value::Bool(_)) => true,
            (Expect::Array, Value::Array(_)) => true,
            (Expect::Object, Value::Object(_)) => true,
            _ => false,
        }
    }

    /// Checks one value; `false` when it must be taken out (its error is recorded).
    fn value(&mut self, schema: &'static Value, v: &mut Value, path: &mut String) -> bool {
        let (schema, def) = self.resolve(schema);
        self.resolved(schema, def, v, path)
    }

    fn resolved(
        &mut self,
        schema: &'static Value,
        def: Option<&'static str>,
        v: &mut Value,
        path: &mut String,
    ) -> bool {
        let e = Self::expect(schema, def);
        if !Self::fits(e, v) {
            let problem = match (e, &*v) {
                (
                    Expect::Integer { int32: true } | Expect::IntOrString { quantity: false },
                    Value::Number(n),
                ) if n.as_i64().is_some() => {
                    format!("{n} is out of range for an int32")
                }
                (
                    Expect::String {
                        date_time: true, ..
                    },
                    Value::String(s),
                ) => {
                    format!("{s:?} is not a time, expected {}", e.words())
                }
                (Expect::String { byte: true, .. }, Value::String(_)) => {
                    "is not valid base64 (plain text goes in stringData)".to_string()
                }
                _ => format!("invalid type: {}, expected {}", shown(v), e.words()),
            };
            self.types.push(FieldError::new(path.clone(), problem));
            return false;
        }
        match v {
            Value::Array(items) => {
                if let Some(item) = schema.get("items") {
                    for (i, it) in items.iter_mut().enumerate() {
                        let len = path.len();
                        path.push_str(&format!("[{i}]"));
                        if it.is_null() || !self.value(item, it, path) {
                            if it.is_null() {
                                self.types.push(FieldError::new(
                                    path.clone(),
                                    "invalid type: null, expected a value",
                                ));
                            }
                            let (s, d) = self.resolve(item);
                            *it = Self::expect(s, d).stand_in();
                        }
                        path.truncate(len);
                    }
                }
            }
            Value::Object(map) if e == Expect::Object => {
                let props = schema.get("properties").and_then(Value::as_object);
                let extra = schema.get("additionalProperties").filter(|a| a.is_object());
                let open = schema.get("x-kubernetes-preserve-unknown-fields")
                    == Some(&Value::Bool(true))
                    || (props.is_none() && extra.is_none());
                // The fields Flotilla implements here, looked up once per object.
                let allowed = def.map(supported);
                let keys: Vec<String> = map.keys().cloned().collect();
                for key in keys {
                    let len = path.len();
                    // A field is `.name`; an entry of a map is `[key]`, as Kubernetes spells it.
                    let field = props.is_some_and(|p| p.contains_key(&key)) || extra.is_none();
                    if !field {
                        path.push('[');
                        path.push_str(&key);
                        path.push(']');
                    } else {
                        if !path.is_empty() {
                            path.push('.');
                        }
                        path.push_str(&key);
                    }
                    let keep = if map.get(&key).is_some_and(Value::is_null) {
                        false
                    } else if let Some(p) = props.and_then(|p| p.get(&key)) {
                        if allowed.is_some_and(|a| !a.contains(&key.as_str())) {
                            self.fields.push(FieldError::new(
                                path.clone(),
                                "not supported by Flotilla yet (a Kubernetes field; applying the object without it would lose what it asks for)",
                            ));
                            false
                        } else {
                            self.value(p, map.get_mut(&key).expect("key listed"), path)
                        }
                    } else if let Some(x) = extra {
                        self.value(x, map.get_mut(&key).expect("key listed"), path)
                    } else if open {
                        true
                    } else {
                        match self.unknown {
                            Unknown::Refuse => self.fields.push(FieldError::new(
                                path.clone(),
                                format!("unknown field `{key}`"),
                            )),
                            Unknown::Drop => self.dropped.push(path.clone()),
                        }
                        false
                    };
                    if !keep {
                        map.remove(&key);
                    }
                    path.truncate(len);
                }
            }
            _ => {}
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::kinds;
    use serde_json::json;

    fn run(kind: &str, mut doc: Value, unknown: Unknown) -> (Value, Checked) {
        let k = kinds::by_kind(kind).unwrap();
        let c = check(k, &mut doc, unknown);
        (doc, c)
    }

    #[test]
    fn every_served_kind_has_a_schema() {
        for k in kinds::KINDS.iter().chain(kinds::REVIEWS) {
            assert!(schemas().of(k).is_some(), "{} ({})", k.kind, k.schema);
        }
    }

    /// Every supported field is a field of Kubernetes' definition, and every definition a
    /// supported field leads to is in the table (or has no fields), so nothing is refused or
    /// accepted by accident of a typo here.
    #[test]
    fn the_supported_table_names_real_fields() {
        let defs = &schemas().defs;
        for (def, fields) in SUPPORTED {
            let schema = defs
                .get(*def)
                .unwrap_or_else(|| panic!("no definition {def}"));
            let props = schema["properties"].as_object().unwrap();
            for f in *fields {
                assert!(props.contains_key(*f), "{def} has no field {f}");
                let w = Walk {
                    defs,
                    unknown: Unknown::Refuse,
                    types: vec![],
                    fields: vec![],
                    dropped: vec![],
                };
                let mut s = &props[*f];
                if let Some(items) = s.get("items") {
                    s = items;
                }
                if let Some(x) = s.get("additionalProperties").filter(|x| x.is_object()) {
                    s = x;
                }
                let (inner, d) = w.resolve(s);
                if let Some(d) = d
                    && inner.get("properties").is_some()
                {
                    assert!(
                        SUPPORTED.iter().any(|(n, _)| *n == d),
                        "{def}.{f} leads to {d}, which the table does not list"
                    );
                }
            }
        }
    }

    #[test]
    fn unknown_unsupported_and_wrong_types_all_at_once() {
        let doc = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "colour": "red", "labels": {"a": 5}},
            "spec": {
                "shareProcessNamespace": true,
                "containers": [
                    {"name": "a", "imagee": "x", "ports": [{"containerPort": "http"}, {"containerPort": 80, "hostIP": "127.0.0.1"}]},
                    {"name": 7, "args": ["ok", 5], "resources": {"limits": {"cpu": 1, "memory": "1Gi"}}},
                ],
                "terminationGracePeriodSeconds": null,
            }
        });
        let (v, c) = run("Pod", doc, Unknown::Refuse);
        let errs: Vec<String> = c.errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            errs,
            [
                "metadata.labels[a]: invalid type: integer `5`, expected a string",
                "spec.containers[0].ports[0].containerPort: invalid type: string \"http\", expected an integer (int32)",
                "spec.containers[1].args[1]: invalid type: integer `5`, expected a string",
                "spec.containers[1].name: invalid type: integer `7`, expected a string",
                "metadata.colour: unknown field `colour`",
                "spec.containers[0].imagee: unknown field `imagee`",
                "spec.shareProcessNamespace: not supported by Flotilla yet (a Kubernetes field; applying the object without it would lose what it asks for)",
            ]
        );
        // What is left decodes: bad parts out, a list keeps its length, a quantity is a string.
        assert!(v["metadata"].get("colour").is_none());
        assert_eq!(v["spec"]["containers"][1]["args"], json!(["ok", ""]));
        assert_eq!(
            v["spec"]["containers"][1]["resources"]["limits"]["cpu"],
            "1"
        );
        assert_eq!(
            v["spec"]["containers"][0]["ports"][1]["hostIP"],
            "127.0.0.1"
        );
        assert!(v["spec"].get("terminationGracePeriodSeconds").is_none());
        serde_json::from_value::<k8s_openapi::api::core::v1::Pod>(v).unwrap();
    }

    #[test]
    fn dropping_unknown_fields_names_them() {
        let doc = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
            "spec": {"colour": "red", "template": {"spec": {"containers": [{"name": "c", "x": 1}]}}}});
        let (v, c) = run("Deployment", doc, Unknown::Drop);
        assert!(c.errors.is_empty(), "{:?}", c.errors);
        assert_eq!(
            c.dropped,
            ["spec.colour", "spec.template.spec.containers[0].x"]
        );
        assert!(v["spec"].get("colour").is_none());
    }

    #[test]
    fn numbers_out_of_range_and_bad_times() {
        let doc = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "d", "creationTimestamp": "yesterday"},
            "spec": {"replicas": 3_000_000_000i64, "strategy": {"rollingUpdate": {"maxSurge": 1.5}}}});
        let (_, c) = run("Deployment", doc, Unknown::Refuse);
        let errs: Vec<String> = c.errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            errs,
            [
                "metadata.creationTimestamp: \"yesterday\" is not a time, expected a time such as \"2026-01-02T15:04:05Z\"",
                "spec.replicas: 3000000000 is out of range for an int32",
                "spec.strategy.rollingUpdate.maxSurge: invalid type: floating point `1.5`, expected an integer or a string",
            ]
        );
    }
}
