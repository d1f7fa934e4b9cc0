//! Generates Kubernetes' schemas of the served kinds at build time, from k8s-openapi's types
//! (its `schemars` feature), into `$OUT_DIR/k8s-schemas.json.z` (zlib), which the agent embeds
//! (`manifest::schema`). Generating them at run time linked schemars' builder code for every
//! type, about 4 MB of the binary; the JSON is about 0.3 MB.
//!
//! A kind the agent serves names its definition in `src/manifest/kinds.rs`; its type is listed
//! here, and a unit test checks that every row's definition is in the file.

use std::io::Write;
use std::path::PathBuf;

use k8s_openapi::api::{
    apps::v1 as apps, authentication::v1 as authn, authorization::v1 as authz,
    autoscaling::v2 as autoscaling, batch::v1 as batch, core::v1 as core,
};
use schemars::generate::{SchemaGenerator, SchemaSettings};

fn main() {
    let mut g = SchemaGenerator::new(SchemaSettings::openapi3());
    g.subschema_for::<core::Namespace>();
    g.subschema_for::<core::ConfigMap>();
    g.subschema_for::<core::Secret>();
    g.subschema_for::<core::Service>();
    g.subschema_for::<core::Pod>();
    g.subschema_for::<apps::ReplicaSet>();
    g.subschema_for::<apps::Deployment>();
    g.subschema_for::<apps::DaemonSet>();
    g.subschema_for::<batch::Job>();
    g.subschema_for::<batch::CronJob>();
    g.subschema_for::<core::ReplicationController>();
    g.subschema_for::<autoscaling::HorizontalPodAutoscaler>();
    g.subschema_for::<core::Node>();
    g.subschema_for::<core::Event>();
    g.subschema_for::<authz::SelfSubjectAccessReview>();
    g.subschema_for::<authz::SelfSubjectRulesReview>();
    g.subschema_for::<authn::SelfSubjectReview>();
    let defs = g.take_definitions(true);
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    // Compressed (zlib): 0.32 MB of JSON is 0.07 MB in the binary, inflated once at first use.
    let json = serde_json::to_vec(&defs).expect("schemas serialise");
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    z.write_all(&json).expect("compressing in memory");
    std::fs::write(
        out.join("k8s-schemas.json.z"),
        z.finish().expect("compressing in memory"),
    )
    .expect("writing the schemas");
    println!("cargo::rerun-if-changed=build.rs");
}
