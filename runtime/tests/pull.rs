//! Registry pulls from a real registry (Debian's docker-registry) on 127.0.0.1: anonymous over
//! plain HTTP, a manifest list resolved to this machine's architecture, and basic auth.

use flotilla_runtime::image::{Credentials, ImageStore};
use flotilla_runtime::testing::{Registry, push_test_image as push};
use oci_client::secrets::RegistryAuth;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_over_http_from_loopback_and_resolves_manifest_lists() {
    // oci-client speaks TLS through rustls without a built-in provider: ring, as the agent.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let reg = Registry::start(None);
    let work = tempfile::tempdir().unwrap();
    let digest = push(
        &reg.addr,
        "flotilla/busybox",
        &RegistryAuth::Anonymous,
        work.path(),
    )
    .await;
    let store = ImageStore::open(&work.path().join("images")).unwrap();

    let name = format!("{}/flotilla/busybox:1", reg.addr);
    let got = store.pull(&name, None).await.unwrap();
    assert_eq!(got.reference, name);
    assert_eq!(got.digest, digest);
    assert_eq!(got.layers, 3);
    let img = store.resolve(&name).unwrap();
    assert!(img.layers.iter().any(|l| l.join("bin/busybox").exists()));

    // The list resolves to this architecture's manifest; the layers are already here.
    let multi = format!("{}/flotilla/busybox:multi", reg.addr);
    let got = store.pull(&multi, None).await.unwrap();
    assert_eq!(got.digest, digest);
    assert_eq!(
        std::fs::read_dir(work.path().join("images/layers"))
            .unwrap()
            .count(),
        3,
        "layers are shared, not unpacked twice"
    );

    let missing = store
        .pull(&format!("{}/flotilla/nope:1", reg.addr), None)
        .await
        .unwrap_err()
        .to_string();
    assert!(missing.contains("flotilla/nope:1"), "{missing}");
    // Nothing half-pulled stays in the staging area.
    assert_eq!(
        std::fs::read_dir(work.path().join("images/tmp"))
            .unwrap()
            .count(),
        0
    );
    drop(reg);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_is_needed_and_used() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let reg = Registry::start(Some(("fleet", "s3cret")));
    let work = tempfile::tempdir().unwrap();
    let auth = RegistryAuth::Basic("fleet".into(), "s3cret".into());
    push(&reg.addr, "private/busybox", &auth, work.path()).await;
    let store = ImageStore::open(&work.path().join("images")).unwrap();
    let name = format!("{}/private/busybox:1", reg.addr);

    let anonymous = store.pull(&name, None).await.unwrap_err().to_string();
    assert!(
        anonymous.contains("Not authorized") && anonymous.contains("private/busybox:1"),
        "{anonymous}"
    );
    let wrong = Credentials {
        username: "fleet".into(),
        password: "wrong".into(),
    };
    assert!(store.pull(&name, Some(&wrong)).await.is_err());
    let right = Credentials {
        username: "fleet".into(),
        password: "s3cret".into(),
    };
    let got = store.pull(&name, Some(&right)).await.unwrap();
    assert_eq!(got.layers, 3);
}
