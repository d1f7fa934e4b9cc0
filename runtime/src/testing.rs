//! Support for tests and benchmarks of the runtime and the agent (not used at run time).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;

/// The project's test image `flotilla.local/busybox:1`: `$FLOTILLA_TEST_IMAGE` when set (the
/// test command builds it once), else built by `scripts/test-image.sh` into `dir`.
pub fn test_image(dir: &Path) -> PathBuf {
    if let Ok(p) = std::env::var("FLOTILLA_TEST_IMAGE") {
        return PathBuf::from(p);
    }
    let out = dir.join("busybox.tar");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/test-image.sh");
    let st = std::process::Command::new(script)
        .arg(&out)
        .output()
        .expect("running scripts/test-image.sh");
    assert!(
        st.status.success(),
        "test-image.sh failed: {}",
        String::from_utf8_lossy(&st.stderr)
    );
    out
}

/// A docker-registry on a free loopback port, killed and removed on drop.
pub struct Registry {
    /// Removed on drop, after the process.
    dir: PathBuf,
    child: Child,
    /// `127.0.0.1:PORT`.
    pub addr: String,
}

impl Registry {
    /// Starts one; with `htpasswd`, it asks for that user and password (basic auth).
    pub fn start(htpasswd: Option<(&str, &str)>) -> Registry {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "flotilla-registry-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let mut cfg = format!(
            "version: 0.1\nlog: {{level: warn}}\nstorage:\n  filesystem: {{rootdirectory: {}}}\nhttp:\n  addr: {addr}\n",
            dir.join("data").display()
        );
        if let Some((user, pass)) = htpasswd {
            let file = dir.join("htpasswd");
            let out = Command::new("htpasswd")
                .args(["-Bbn", user, pass])
                .output()
                .expect("htpasswd (apache2-utils; scripts/install-deps.sh installs it)");
            std::fs::write(&file, out.stdout).unwrap();
            cfg.push_str(&format!(
                "auth:\n  htpasswd: {{realm: flotilla-test, path: {}}}\n",
                file.display()
            ));
        }
        let cfg_path = dir.join("config.yml");
        std::fs::write(&cfg_path, cfg).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&cfg_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry (scripts/install-deps.sh installs it)");
        let r = Registry { dir, child, addr };
        let t = Instant::now();
        while std::net::TcpStream::connect(&r.addr).is_err() {
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "registry did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        r
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The test image's OCI layout, unpacked: (manifest bytes, blobs dir).
fn test_layout(dir: &Path) -> (Vec<u8>, PathBuf) {
    let tar = test_image(dir);
    let out = dir.join("layout");
    std::fs::create_dir_all(&out).unwrap();
    let st = Command::new("tar")
        .arg("-xf")
        .arg(&tar)
        .arg("-C")
        .arg(&out)
        .status()
        .unwrap();
    assert!(st.success());
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("index.json")).unwrap()).unwrap();
    let digest = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let blobs = out.join("blobs/sha256");
    let manifest = std::fs::read(blobs.join(digest.trim_start_matches("sha256:"))).unwrap();
    (manifest, blobs)
}

/// Pushes the test image to `repo:tag` (and a manifest list as `repo:multi`), as a client of
/// the registry would; returns the image manifest's digest.
pub async fn push_test_image(addr: &str, repo: &str, auth: &RegistryAuth, work: &Path) -> String {
    let (manifest, blobs) = test_layout(work);
    let client = oci_client::Client::new(ClientConfig {
        protocol: ClientProtocol::Http,
        ..Default::default()
    });
    let r: oci_client::Reference = format!("{addr}/{repo}:1").parse().unwrap();
    client
        .auth(&r, auth, oci_client::RegistryOperation::Push)
        .await
        .ok();
    let m: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    let mut digests = vec![m["config"]["digest"].as_str().unwrap().to_string()];
    for l in m["layers"].as_array().unwrap() {
        digests.push(l["digest"].as_str().unwrap().to_string());
    }
    for d in digests {
        let mut data = Vec::new();
        std::fs::File::open(blobs.join(d.trim_start_matches("sha256:")))
            .unwrap()
            .read_to_end(&mut data)
            .unwrap();
        client.push_blob(&r, data, &d).await.unwrap();
    }
    let mt = "application/vnd.oci.image.manifest.v1+json";
    let url = client
        .push_manifest_raw(&r, manifest.clone(), mt.parse().unwrap())
        .await
        .unwrap();
    assert!(url.contains(repo), "{url}");
    let digest = format!(
        "sha256:{}",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&manifest))
    );
    // A manifest list with another architecture first: the pull must pick this machine's.
    let other = if crate::image::host_arch() == "arm64" {
        "amd64"
    } else {
        "arm64"
    };
    // The other architecture's entry: a different manifest (same blobs, an annotation).
    let mut m2 = m.clone();
    m2["annotations"] = serde_json::json!({"flotilla.test/variant": other});
    let m2 = serde_json::to_vec(&m2).unwrap();
    let other_digest = format!(
        "sha256:{}",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&m2))
    );
    let other_ref: oci_client::Reference = format!("{addr}/{repo}:other").parse().unwrap();
    client
        .push_manifest_raw(&other_ref, m2.clone(), mt.parse().unwrap())
        .await
        .unwrap();
    let list = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": mt, "digest": other_digest, "size": m2.len(),
             "platform": {"architecture": other, "os": "linux"}},
            {"mediaType": mt, "digest": digest, "size": manifest.len(),
             "platform": {"architecture": crate::image::host_arch(), "os": "linux"}},
        ],
    });
    let multi: oci_client::Reference = format!("{addr}/{repo}:multi").parse().unwrap();
    client
        .push_manifest_raw(
            &multi,
            serde_json::to_vec(&list).unwrap(),
            "application/vnd.oci.image.index.v1+json".parse().unwrap(),
        )
        .await
        .unwrap();
    digest
}
