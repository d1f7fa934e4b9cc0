//! `flotilla apply -f FILE|DIR|-`: read every document, check each locally so errors name the
//! file and document, then send them all in one all-or-nothing apply.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use reqwest::Method;
use serde_json::{Value, json};

use super::client::{ApiFailure, Client};
use crate::manifest::{self, Document, DocumentErrors, FieldError};

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// File, directory (its .yaml, .yml and .json files) or - for standard input.
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<PathBuf>,
    /// Namespace for objects that name none.
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Write nothing: `server` has the cluster check everything as for a real apply
    /// (conflicts, addresses) and say what it would do; `client` checks the files here only;
    /// `none` applies. `--dry-run` alone is `server`.
    #[arg(long, value_enum, num_args = 0..=1, default_value_t = DryRun::None, default_missing_value = "server")]
    pub dry_run: DryRun,
}

/// `--dry-run=none|client|server`, as kubectl's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DryRun {
    None,
    Client,
    Server,
}

/// Reads the documents of every `-f` argument, in order.
pub fn read_documents(files: &[PathBuf]) -> Result<Vec<Document>, Vec<DocumentErrors>> {
    let mut docs = Vec::new();
    let mut errors = Vec::new();
    let io_err = |source: String, e: String| DocumentErrors {
        source,
        document: 0,
        errors: vec![FieldError::new("", e)],
    };
    for f in files {
        let sources: Vec<PathBuf> = if f.as_os_str() == "-" {
            vec![f.clone()]
        } else if f.is_dir() {
            match list_dir(f) {
                Ok(v) => v,
                Err(e) => {
                    errors.push(io_err(f.display().to_string(), e.to_string()));
                    continue;
                }
            }
        } else {
            vec![f.clone()]
        };
        for src in sources {
            let name = src.display().to_string();
            let text = if src.as_os_str() == "-" {
                let mut s = String::new();
                std::io::stdin().read_to_string(&mut s).map(|_| s)
            } else {
                std::fs::read_to_string(&src)
            };
            match text {
                Ok(t) => match manifest::split_documents(&t, &name) {
                    Ok(d) => docs.extend(d),
                    Err(e) => errors.push(e),
                },
                Err(e) => errors.push(io_err(name, format!("cannot read: {e}"))),
            }
        }
    }
    if errors.is_empty() {
        Ok(docs)
    } else {
        Err(errors)
    }
}

fn list_dir(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("yaml" | "yml" | "json")
                )
        })
        .collect();
    v.sort();
    Ok(v)
}

fn print_errors(errors: &[DocumentErrors]) {
    for e in errors {
        if e.document == 0 {
            for fe in &e.errors {
                eprintln!("error: {}: {}", e.source, fe);
            }
        } else {
            for line in e.to_string().lines() {
                eprintln!("error: {line}");
            }
        }
    }
}

/// Checks every document locally; returns their values or every error with file and document.
pub fn check_documents(docs: &[Document]) -> Result<Vec<Value>, Vec<DocumentErrors>> {
    let mut errors = Vec::new();
    let mut values = Vec::new();
    for d in docs {
        match manifest::prepare(d.value.clone()) {
            Ok(_) => values.push(d.value.clone()),
            Err(es) => errors.push(DocumentErrors {
                source: d.source.clone(),
                document: d.document,
                errors: es,
            }),
        }
    }
    if errors.is_empty() {
        Ok(values)
    } else {
        Err(errors)
    }
}

/// `kind.group/name` as kubectl prints it (`deployment.apps/web`).
pub fn display_name(kind: &str, api_version: &str, name: &str) -> String {
    let group = api_version.split_once('/').map(|(g, _)| g).unwrap_or("");
    let kind = kind.to_ascii_lowercase();
    if group.is_empty() {
        format!("{kind}/{name}")
    } else {
        format!("{kind}.{group}/{name}")
    }
}

pub async fn run(cfg: &Path, a: ApplyArgs) -> Result<i32> {
    let docs = match read_documents(&a.files).and_then(|d| check_documents(&d).map(|v| (d, v))) {
        Ok(x) => x,
        Err(errors) => {
            print_errors(&errors);
            eprintln!("error: nothing was applied");
            return Ok(1);
        }
    };
    let (docs, values) = docs;
    if values.is_empty() {
        eprintln!("error: no objects passed to apply");
        return Ok(1);
    }
    let client = Client::from_config_file(cfg)?;
    if a.dry_run == DryRun::Client {
        // Checked locally above; only whether each object exists is asked.
        for v in &values {
            let kind = v["kind"].as_str().unwrap_or("");
            let info = crate::manifest::kinds::by_kind(kind).context("a checked kind")?;
            let name = v["metadata"]["name"].as_str().unwrap_or("");
            let ns = match (v["metadata"]["namespace"].as_str(), a.namespace.as_deref()) {
                (Some(doc), Some(flag)) if doc != flag => anyhow::bail!(
                    "{}: the namespace from the provided object {doc:?} does not match the namespace {flag:?} of the request",
                    display_name(kind, v["apiVersion"].as_str().unwrap_or(""), name)
                ),
                (Some(doc), _) => doc,
                (None, flag) => flag.unwrap_or("default"),
            };
            let path = crate::api::path::object_path(info, Some(ns), Some(name));
            let word = match client.get(&path, &[]).await {
                Ok(_) => "configured",
                Err(e) if super::client::is_not_found(&e) => "created",
                Err(e) => return Err(e),
            };
            println!(
                "{} {word} (dry run)",
                display_name(kind, v["apiVersion"].as_str().unwrap_or(""), name)
            );
        }
        return Ok(0);
    }
    let body =
        json!({"items": values, "namespace": a.namespace, "dryRun": a.dry_run == DryRun::Server});
    let res = client
        .json(Method::POST, "/apis/flotilla.io/v1/apply", &[], Some(&body))
        .await;
    let res = match res {
        Ok(r) => r,
        Err(e) => {
            // Map `items[i].field` causes back to file and document.
            if let Some(f) = e.downcast_ref::<ApiFailure>()
                && let Some(causes) = f.status["details"]["causes"].as_array()
            {
                for c in causes {
                    let field = c["field"].as_str().unwrap_or("");
                    let msg = c["message"].as_str().unwrap_or("");
                    let (idx, rest) = split_item(field);
                    match idx.and_then(|i| docs.get(i)) {
                        Some(d) if rest.is_empty() => {
                            eprintln!("error: {}, document {}: {msg}", d.source, d.document)
                        }
                        Some(d) => eprintln!(
                            "error: {}, document {}: {rest}: {msg}",
                            d.source, d.document
                        ),
                        None => eprintln!("error: {field}: {msg}"),
                    }
                }
                eprintln!("error: nothing was applied");
                return Ok(1);
            }
            return Err(e).context("apply failed, nothing was applied");
        }
    };
    for item in res["items"].as_array().into_iter().flatten() {
        let name = display_name(
            item["kind"].as_str().unwrap_or(""),
            item["apiVersion"].as_str().unwrap_or(""),
            item["name"].as_str().unwrap_or(""),
        );
        println!("{name} {}", item["outcome"].as_str().unwrap_or(""));
    }
    Ok(0)
}

/// `items[3].spec.x` -> (Some(3), "spec.x").
fn split_item(field: &str) -> (Option<usize>, &str) {
    let Some(rest) = field.strip_prefix("items[") else {
        return (None, field);
    };
    let Some((n, rest)) = rest.split_once(']') else {
        return (None, field);
    };
    (n.parse().ok(), rest.strip_prefix('.').unwrap_or(rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_fields_map_back() {
        assert_eq!(
            split_item("items[3].spec.replicas"),
            (Some(3), "spec.replicas")
        );
        assert_eq!(split_item("items[0]"), (Some(0), ""));
        assert_eq!(split_item("spec"), (None, "spec"));
    }

    #[test]
    fn display_names() {
        assert_eq!(
            display_name("Deployment", "apps/v1", "web"),
            "deployment.apps/web"
        );
        assert_eq!(display_name("Service", "v1", "web"), "service/web");
    }
}
