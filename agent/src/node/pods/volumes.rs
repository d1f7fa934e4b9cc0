//! A pod's files on the node: its volumes and the /etc files its containers get.
//!
//! ```text
//! DIR/pods/<uid>/pod.json          namespace, name, labels, grace period, preStop hooks
//!                                   (for cleanup after deletion)
//! DIR/pods/<uid>/etc/{hosts,hostname,resolv.conf}
//! DIR/pods/<uid>/volumes/<name>/   emptyDir (a tmpfs when medium is Memory), configMap, secret
//! DIR/pods/<uid>/logs/<container>_<attempt>.log
//! DIR/pods/<uid>/termination/<instance id>   mounted at the container's terminationMessagePath
//! ```
//! ConfigMap and Secret volumes are written as the kubelet does, so that an update is atomic
//! for readers: the files live in a `..<stamp>` dir, `..data` is a symlink to it, and each key
//! is a symlink `key -> ..data/key`. An update writes a new stamp dir and renames a new
//! `..data` over the old one.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{KeyToPath, PodSpec, Volume};
use serde::{Deserialize, Serialize};

use crate::manifest::lifecycle::items;

/// What the node remembers of a pod it runs, for when the pod is gone from the store.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct PodRecord {
    pub namespace: String,
    pub name: String,
    pub grace_seconds: u64,
    /// The pod's labels: which Services it backed.
    pub labels: BTreeMap<String, String>,
    /// Each container's preStop hook, run when the pod is deleted.
    pub pre_stop: BTreeMap<String, Hook>,
}

/// A container's preStop hook, as `pod.json` keeps it (a command, as agents before the `sleep`
/// hook wrote it, or a pause).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Hook {
    /// A command run in the container.
    Exec(Vec<String>),
    /// A pause before SIGTERM.
    Sleep {
        #[serde(rename = "sleepSeconds")]
        seconds: u64,
    },
}

impl Hook {
    /// A container's preStop hook, if it has one the node runs.
    pub fn pre_stop(c: &k8s_openapi::api::core::v1::Container) -> Option<Hook> {
        let h = c.lifecycle.as_ref()?.pre_stop.as_ref()?;
        if let Some(x) = &h.exec {
            return Some(Hook::Exec(x.command.clone().unwrap_or_default()));
        }
        h.sleep.as_ref().map(|s| Hook::Sleep {
            seconds: s.seconds.max(0) as u64,
        })
    }
}

pub fn pod_dir(data: &Path, uid: &str) -> PathBuf {
    data.join("pods").join(uid)
}

/// One file of a projected volume: its path in the volume, content and mode.
pub type Projection = BTreeMap<String, (Vec<u8>, u32)>;

/// The files of a configMap or secret volume from the object's data (`items` picks and
/// renames keys; a named key that is missing is an error unless the volume is optional).
pub fn project(
    data: &BTreeMap<String, String>,
    items: &[KeyToPath],
    default_mode: Option<i32>,
) -> Result<Projection, String> {
    let mode = default_mode.unwrap_or(0o644) as u32;
    let mut out = Projection::new();
    if items.is_empty() {
        for (k, v) in data {
            out.insert(k.clone(), (v.clone().into_bytes(), mode));
        }
        return Ok(out);
    }
    for it in items {
        let v = data
            .get(&it.key)
            .ok_or_else(|| format!("key {:?} not found", it.key))?;
        if it.path.starts_with('/') || it.path.split('/').any(|p| p == ".." || p.is_empty()) {
            return Err(format!("path {:?} must be relative, without '..'", it.path));
        }
        out.insert(
            it.path.clone(),
            (
                v.clone().into_bytes(),
                it.mode.map(|m| m as u32).unwrap_or(mode),
            ),
        );
    }
    Ok(out)
}

/// Makes `dir` hold exactly `files`, atomically for readers; returns whether anything changed.
pub fn write_projection(dir: &Path, files: &Projection) -> std::io::Result<bool> {
    fs::create_dir_all(dir)?;
    let data = dir.join("..data");
    if let Ok(current) = fs::read_link(&data) {
        let cur = dir.join(current);
        let same = files.iter().all(|(p, (content, mode))| {
            let f = cur.join(p);
            fs::read(&f).is_ok_and(|c| &c == content)
                && fs::metadata(&f).is_ok_and(|m| m.permissions().mode() & 0o7777 == *mode)
        }) && count_files(&cur) == files.len();
        if same {
            return Ok(false);
        }
    }
    let stamp = format!(
        "..{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    );
    let new = dir.join(&stamp);
    fs::create_dir_all(&new)?;
    for (p, (content, mode)) in files {
        let f = new.join(p);
        if let Some(parent) = f.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::write(&f, content)?;
        fs::set_permissions(&f, fs::Permissions::from_mode(*mode))?;
    }
    let tmp = dir.join("..data_tmp");
    let _ = fs::remove_file(&tmp);
    symlink(&stamp, &tmp)?;
    let old = fs::read_link(&data).ok();
    fs::rename(&tmp, &data)?;
    // Top-level names point through ..data; names no longer there go.
    let tops: std::collections::BTreeSet<&str> =
        files.keys().filter_map(|p| p.split('/').next()).collect();
    for t in &tops {
        let link = dir.join(t);
        if fs::symlink_metadata(&link).is_err() {
            symlink(format!("..data/{t}"), &link)?;
        }
    }
    for e in fs::read_dir(dir)?.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if !name.starts_with("..") && !tops.contains(name.as_str()) {
            let _ = fs::remove_file(e.path());
        }
    }
    if let Some(old) = old
        && old != Path::new(&stamp)
    {
        let _ = fs::remove_dir_all(dir.join(old));
    }
    Ok(true)
}

fn count_files(dir: &Path) -> usize {
    let Ok(rd) = fs::read_dir(dir) else { return 0 };
    rd.flatten()
        .map(|e| {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                count_files(&e.path())
            } else {
                1
            }
        })
        .sum()
}

/// The ConfigMaps and Secrets (decoded) of a namespace, by name.
pub struct Sources<'a> {
    pub config_maps: &'a BTreeMap<String, BTreeMap<String, String>>,
    pub secrets: &'a BTreeMap<String, BTreeMap<String, String>>,
}

/// Brings the pod's volumes up to date on disk; returns each volume's host directory.
pub fn sync_volumes(
    dir: &Path,
    spec: &PodSpec,
    src: &Sources<'_>,
) -> Result<BTreeMap<String, PathBuf>, String> {
    let mut out = BTreeMap::new();
    for v in items(&spec.volumes) {
        out.insert(v.name.clone(), sync_volume(dir, v, src)?);
    }
    Ok(out)
}

fn sync_volume(dir: &Path, v: &Volume, src: &Sources<'_>) -> Result<PathBuf, String> {
    let path = dir.join("volumes").join(&v.name);
    let io = |what: &str, e: std::io::Error| format!("volume {:?}: {what}: {e}", v.name);
    if let Some(e) = &v.empty_dir {
        if !path.exists() {
            fs::create_dir_all(&path).map_err(|e| io("creating", e))?;
            fs::set_permissions(&path, fs::Permissions::from_mode(0o777))
                .map_err(|e| io("chmod", e))?;
        }
        if e.medium.as_deref() == Some("Memory") && !flotilla_runtime::rootfs::is_mounted(&path) {
            let size = e
                .size_limit
                .as_ref()
                .and_then(|q| crate::manifest::quantity::parse_units(&q.0).ok());
            let opts = match size {
                Some(b) => format!("mode=1777,size={b}"),
                None => "mode=1777".to_string(),
            };
            nix::mount::mount(
                Some("tmpfs"),
                &path,
                Some("tmpfs"),
                nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
                Some(opts.as_str()),
            )
            .map_err(|e| io("mounting a tmpfs", e.into()))?;
        }
        return Ok(path);
    }
    if let Some(h) = &v.host_path {
        let p = PathBuf::from(&h.path);
        match h.type_.as_deref().unwrap_or("") {
            "DirectoryOrCreate" => fs::create_dir_all(&p).map_err(|e| io("creating", e))?,
            "Directory" if !p.is_dir() => {
                return Err(format!(
                    "volume {:?}: hostPath {} is not a directory",
                    v.name, h.path
                ));
            }
            "File" if !p.is_file() => {
                return Err(format!(
                    "volume {:?}: hostPath {} is not a file",
                    v.name, h.path
                ));
            }
            "FileOrCreate" if !p.exists() => {
                if let Some(parent) = p.parent() {
                    fs::create_dir_all(parent).map_err(|e| io("creating", e))?;
                }
                fs::write(&p, b"").map_err(|e| io("creating", e))?;
            }
            _ => {}
        }
        return Ok(p);
    }
    let none = String::new();
    let (data, keys, mode, optional, what, name) = if let Some(c) = &v.config_map {
        (
            src.config_maps.get(&c.name),
            items(&c.items),
            c.default_mode,
            c.optional,
            "configmap",
            &c.name,
        )
    } else if let Some(s) = &v.secret {
        let name = s.secret_name.as_ref().unwrap_or(&none);
        (
            src.secrets.get(name),
            items(&s.items),
            s.default_mode,
            s.optional,
            "secret",
            name,
        )
    } else {
        return Err(format!("volume {:?}: no supported source", v.name));
    };
    let empty = BTreeMap::new();
    let data = match data {
        Some(d) => d,
        None if optional == Some(true) => &empty,
        None => return Err(format!("volume {:?}: {what} {name:?} not found", v.name)),
    };
    let files = project(data, keys, mode).map_err(|e| format!("volume {:?}: {e}", v.name))?;
    write_projection(&path, &files).map_err(|e| io("writing", e))?;
    Ok(path)
}

/// Writes /etc/hosts, /etc/hostname and /etc/resolv.conf for the pod's containers.
pub fn write_etc(
    dir: &Path,
    hostname: &str,
    pod_ip: &str,
    resolv: &str,
) -> std::io::Result<Vec<(PathBuf, &'static str)>> {
    let etc = dir.join("etc");
    fs::create_dir_all(&etc)?;
    let mut hosts =
        String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    if !pod_ip.is_empty() {
        hosts.push_str(&format!("{pod_ip}\t{hostname}\n"));
    } else {
        hosts.push_str(&format!("127.0.1.1\t{hostname}\n"));
    }
    let files = [
        ("hosts", hosts, "/etc/hosts"),
        ("hostname", format!("{hostname}\n"), "/etc/hostname"),
        ("resolv.conf", resolv.to_string(), "/etc/resolv.conf"),
    ];
    let mut out = Vec::new();
    for (name, content, dest) in files {
        let p = etc.join(name);
        if fs::read_to_string(&p).ok().as_deref() != Some(content.as_str()) {
            fs::write(&p, content)?;
        }
        out.push((p, dest));
    }
    Ok(out)
}

/// Removes a pod's dir, unmounting what is mounted under it first (tmpfs emptyDirs).
pub fn remove_pod_dir(dir: &Path) -> std::io::Result<()> {
    if let Ok(mi) = fs::read_to_string("/proc/self/mountinfo") {
        let mut mounts: Vec<PathBuf> = mi
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .map(PathBuf::from)
            .filter(|m| m.starts_with(dir))
            .collect();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
        for m in mounts {
            let _ = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH);
        }
    }
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_records_of_older_agents_still_read() {
        let old = r#"{"namespace":"default","name":"web","graceSeconds":30,"preStop":{"app":["sh","-c","echo bye"]}}"#;
        let rec: PodRecord = serde_json::from_str(old).unwrap();
        assert_eq!(
            rec.pre_stop["app"],
            Hook::Exec(vec!["sh".into(), "-c".into(), "echo bye".into()])
        );
        let mut rec = rec;
        rec.pre_stop
            .insert("side".into(), Hook::Sleep { seconds: 5 });
        let again: PodRecord = serde_json::from_str(&serde_json::to_string(&rec).unwrap()).unwrap();
        assert_eq!(again, rec);
    }

    #[test]
    fn projections_update_atomically_and_drop_removed_keys() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("cfg");
        let mut data = BTreeMap::new();
        data.insert("index.html".to_string(), "v1".to_string());
        data.insert("extra".to_string(), "x".to_string());
        let files = project(&data, &[], None).unwrap();
        assert!(write_projection(&dir, &files).unwrap());
        assert_eq!(fs::read_to_string(dir.join("index.html")).unwrap(), "v1");
        // The same content writes nothing.
        assert!(!write_projection(&dir, &files).unwrap());
        data.insert("index.html".to_string(), "v2".to_string());
        data.remove("extra");
        assert!(write_projection(&dir, &project(&data, &[], None).unwrap()).unwrap());
        assert_eq!(fs::read_to_string(dir.join("index.html")).unwrap(), "v2");
        assert!(!dir.join("extra").exists());
        // Only the new stamp dir remains.
        let stamps = fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("..1"))
            .count();
        assert_eq!(stamps, 1);
    }

    #[test]
    fn items_pick_and_rename_keys_with_modes() {
        let data: BTreeMap<String, String> = [("a".to_string(), "1".to_string())].into();
        let items = vec![KeyToPath {
            key: "a".into(),
            path: "sub/renamed".into(),
            mode: Some(0o600),
        }];
        let p = project(&data, &items, Some(0o644)).unwrap();
        assert_eq!(p["sub/renamed"], (b"1".to_vec(), 0o600));
        let bad = vec![KeyToPath {
            key: "zz".into(),
            path: "x".into(),
            mode: None,
        }];
        assert_eq!(
            project(&data, &bad, None).unwrap_err(),
            "key \"zz\" not found"
        );
        let escape = vec![KeyToPath {
            key: "a".into(),
            path: "../x".into(),
            mode: None,
        }];
        assert!(project(&data, &escape, None).is_err());
        let t = tempfile::tempdir().unwrap();
        write_projection(&t.path().join("v"), &p).unwrap();
        assert_eq!(
            fs::read_to_string(t.path().join("v/sub/renamed")).unwrap(),
            "1"
        );
    }
}
