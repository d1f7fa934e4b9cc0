//! `flotilla label KIND NAME key=value... key-... [--overwrite]`, as kubectl's: set and remove
//! labels of one object (a Node for nodeSelector and affinity, usually). All changes are checked
//! before anything is written, and they land in one write or not at all.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Result, bail};
use clap::Args;
use reqwest::Method;

use super::apply::display_name;
use super::client::Client;
use super::get::targets;
use crate::api::path::object_path;
use crate::manifest::validate::{label_key_error, label_value_error};

#[derive(Debug, Args)]
pub struct LabelArgs {
    /// KIND NAME or KIND/NAME (node/pi-3, deployment/web).
    pub target: String,
    /// NAME (when the target is a KIND), then `key=value` to set and `key-` to remove.
    #[arg(required = true, num_args = 1..)]
    pub rest: Vec<String>,
    /// Replace a label that already has another value.
    #[arg(long)]
    pub overwrite: bool,
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
}

/// One change: set `key` to a value, or remove it (`None`).
pub type Change = (String, Option<String>);

/// Parses `key=value` and `key-`, naming the argument that is wrong.
pub fn parse_changes(args: &[String]) -> Result<Vec<Change>, String> {
    let mut out: Vec<Change> = Vec::new();
    for a in args {
        let (key, value) = match a.split_once('=') {
            Some((k, v)) => (k, Some(v.to_string())),
            None => match a.strip_suffix('-') {
                Some(k) => (k, None),
                None => return Err(format!("{a:?}: expected key=value or key-")),
            },
        };
        if let Some(e) = label_key_error(key) {
            return Err(format!("{a:?}: key {e}"));
        }
        if let Some(e) = value.as_deref().and_then(label_value_error) {
            return Err(format!("{a:?}: value {e}"));
        }
        if out.iter().any(|(k, _)| k == key) {
            return Err(format!("{a:?}: label {key:?} is changed twice"));
        }
        out.push((key.to_string(), value));
    }
    Ok(out)
}

/// The labels after `changes`; a label that would get a different value needs `overwrite`.
/// Returns `None` when nothing changes.
pub fn relabel(
    labels: &BTreeMap<String, String>,
    changes: &[Change],
    overwrite: bool,
) -> Result<Option<BTreeMap<String, String>>, String> {
    let mut out = labels.clone();
    for (k, v) in changes {
        match v {
            Some(v) => {
                if let Some(old) = labels.get(k)
                    && old != v
                    && !overwrite
                {
                    return Err(format!(
                        "label {k:?} already has the value {old:?}; add --overwrite to replace it"
                    ));
                }
                out.insert(k.clone(), v.clone());
            }
            None => {
                out.remove(k);
            }
        }
    }
    Ok((out != *labels).then_some(out))
}

pub async fn run(cfg: &Path, a: LabelArgs) -> Result<i32> {
    let (names, changes): (Vec<String>, Vec<String>) = if a.target.contains('/') {
        (Vec::new(), a.rest)
    } else {
        let mut rest = a.rest.into_iter();
        (rest.next().into_iter().collect(), rest.collect())
    };
    let t = targets(&a.target, &names)?;
    let [(info, Some(name))] = t.as_slice() else {
        bail!("label needs one object: KIND NAME or KIND/NAME")
    };
    if changes.is_empty() {
        bail!("label needs at least one key=value or key-");
    }
    let changes = parse_changes(&changes).map_err(anyhow::Error::msg)?;
    let ns = a.namespace.unwrap_or_else(|| "default".into());
    let client = Client::from_config_file(cfg)?;
    let path = object_path(info, Some(&ns), Some(name));
    let shown = display_name(info.kind, info.api_version, name);
    let mut obj = client.get(&path, &[]).await.map_err(|e| {
        if super::client::is_not_found(&e) {
            anyhow::anyhow!("{shown} not found")
        } else {
            e
        }
    })?;
    let labels = crate::manifest::selector::string_map(&obj["metadata"]["labels"]);
    match relabel(&labels, &changes, a.overwrite).map_err(anyhow::Error::msg)? {
        None => println!("{shown} not labeled"),
        Some(new) => {
            obj["metadata"]["labels"] = serde_json::to_value(new)?;
            // Sent with the resourceVersion read above: a concurrent change is a conflict,
            // not overwritten.
            client.json(Method::PUT, &path, &[], Some(&obj)).await?;
            println!("{shown} labeled");
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::selector::labels;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn sets_and_removes_and_refuses_a_silent_overwrite() {
        let l = labels(&[("disk", "hdd"), ("old", "x")]);
        let c = parse_changes(&args(&["zone=a", "old-"])).unwrap();
        assert_eq!(
            relabel(&l, &c, false).unwrap(),
            Some(labels(&[("disk", "hdd"), ("zone", "a")]))
        );
        let c = parse_changes(&args(&["disk=ssd"])).unwrap();
        assert_eq!(
            relabel(&l, &c, false).unwrap_err(),
            "label \"disk\" already has the value \"hdd\"; add --overwrite to replace it"
        );
        assert_eq!(
            relabel(&l, &c, true).unwrap(),
            Some(labels(&[("disk", "ssd"), ("old", "x")]))
        );
        let same = parse_changes(&args(&["disk=hdd", "absent-"])).unwrap();
        assert_eq!(relabel(&l, &same, false).unwrap(), None);
    }

    #[test]
    fn bad_arguments_name_themselves() {
        assert_eq!(
            parse_changes(&args(&["disk"])).unwrap_err(),
            "\"disk\": expected key=value or key-"
        );
        assert!(
            parse_changes(&args(&["a=b", "a-"]))
                .unwrap_err()
                .contains("changed twice")
        );
        assert!(
            parse_changes(&args(&["zone=no spaces"]))
                .unwrap_err()
                .starts_with("\"zone=no spaces\": value")
        );
        assert!(
            parse_changes(&args(&["-bad=x"]))
                .unwrap_err()
                .starts_with("\"-bad=x\": key")
        );
    }
}
