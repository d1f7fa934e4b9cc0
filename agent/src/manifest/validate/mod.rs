//! Semantic validation of decoded manifests. Every problem is collected, so `apply` can list all
//! bad fields of a document at once; the messages follow Kubernetes' wording where it has one.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, ExecAction, HTTPGetAction, KeyToPath, Namespace, NodeAffinity,
    NodeSelectorTerm, Pod, PodSpec, PodTemplateSpec, ReplicationController, ResourceRequirements,
    Secret, Service, ServiceSpec, TCPSocketAction, Toleration, TopologySpreadConstraint,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::lifecycle::{items, strings};
use super::{FieldError, Manifest, quantity};

mod autoscaling;
mod config;
mod meta;
mod pod;
mod service;
mod workloads;

use crate::manifest::selector::Selector;
use autoscaling::*;
use config::*;
use meta::*;
pub use meta::{
    dns_label_error, dns_subdomain_error, label_key_error, label_value_error, port_name_error,
};
use pod::*;
use service::*;
use workloads::*;

/// Collects errors under a path prefix.
pub(super) struct Errors(Vec<FieldError>);

impl Errors {
    pub(super) fn add(&mut self, path: impl Into<String>, msg: impl Into<String>) {
        self.0.push(FieldError::new(path, msg));
    }
}

/// Validates one decoded manifest; an empty result means it may be stored.
pub fn validate(m: &Manifest) -> Vec<FieldError> {
    let mut e = Errors(Vec::new());
    match m {
        Manifest::Namespace(o) => namespace(&mut e, o),
        Manifest::ConfigMap(o) => config_map(&mut e, o),
        Manifest::Secret(o) => secret(&mut e, o),
        Manifest::Service(o) => service_object(&mut e, o),
        Manifest::Pod(o) => pod(&mut e, o),
        Manifest::ReplicaSet(o) => replica_set(&mut e, o),
        Manifest::Deployment(o) => deployment(&mut e, o),
        Manifest::DaemonSet(o) => daemon_set(&mut e, o),
        Manifest::Job(o) => job(&mut e, o),
        Manifest::CronJob(o) => cron_job(&mut e, o),
        Manifest::ReplicationController(o) => replication_controller(&mut e, o),
        Manifest::HorizontalPodAutoscaler(o) => horizontal_pod_autoscaler(&mut e, o),
    }
    e.0
}

pub(super) fn non_negative(e: &mut Errors, path: &str, v: Option<impl Into<i64>>) {
    if let Some(v) = v.map(Into::into)
        && v < 0
    {
        e.add(path, format!("{v} must be greater than or equal to 0"));
    }
}

pub(super) fn port_number(e: &mut Errors, p: &str, n: impl Into<i64>) {
    let n = n.into();
    if !(1..=65535).contains(&n) {
        e.add(p, format!("{n} is not in 1-65535"));
    }
}

pub(super) fn protocol(e: &mut Errors, p: &str, proto: Option<&str>) -> String {
    let proto = proto.unwrap_or("TCP");
    if !["TCP", "UDP", "SCTP"].contains(&proto) {
        e.add(p, format!("{proto:?} is not one of TCP, UDP, SCTP"));
    }
    proto.to_string()
}
