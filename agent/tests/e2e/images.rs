//! `flotilla image import | ls | rm` against a real agent, with the project's busybox image.

use crate::harness::Agent;

#[test]
fn import_list_and_remove_the_test_image() {
    let a = Agent::start();
    let tar = flotilla_runtime::testing::test_image(a.data_dir());
    let out = a.ok(&["image", "import", tar.to_str().unwrap()]);
    assert!(
        out.starts_with("flotilla.local/busybox:1 imported (sha256:"),
        "{out}"
    );
    assert!(out.contains("3 layers"), "{out}");
    let ls = a.ok(&["image", "ls"]);
    assert!(
        ls.starts_with("IMAGE") && ls.contains("flotilla.local/busybox:1"),
        "{ls}"
    );
    // The layers are unpacked in the node's data dir, once.
    let layers = std::fs::read_dir(a.data_dir().join("images/layers"))
        .unwrap()
        .count();
    assert_eq!(layers, 3);
    assert!(
        a.data_dir()
            .join("images/layers")
            .read_dir()
            .unwrap()
            .any(|l| l.unwrap().path().join("bin/busybox").exists())
    );

    let junk = a.data_dir().join("junk.tar");
    std::fs::write(&junk, b"junk").unwrap();
    let out = a.cli(&["image", "import", junk.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not an image archive"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    assert_eq!(
        a.ok(&["image", "rm", "flotilla.local/busybox:1"]),
        "flotilla.local/busybox:1 removed\n"
    );
    assert_eq!(a.ok(&["image", "ls"]).lines().count(), 1, "only the header");
    assert_eq!(
        std::fs::read_dir(a.data_dir().join("images/layers"))
            .unwrap()
            .count(),
        0,
        "unused layers are collected"
    );
    let out = a.cli(&["image", "rm", "flotilla.local/busybox:1"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));
}

#[test]
fn pods_pull_their_image_from_a_registry_and_image_pull_works() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let reg = flotilla_runtime::testing::Registry::start(None);
    let work = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let digest = rt.block_on(flotilla_runtime::testing::push_test_image(
        &reg.addr,
        "flotilla/busybox",
        &oci_client::secrets::RegistryAuth::Anonymous,
        work.path(),
    ));
    let a = Agent::start();
    let image = format!("{}/flotilla/busybox:1", reg.addr);
    let m = crate::harness::manifest(
        &a,
        "pod.yaml",
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: pulled}}\nspec:\n  containers:\n  - name: app\n    image: {image}\n    command: [sleep, \"600\"]\n"
        ),
    );
    a.ok(&["apply", "-f", &m]);
    a.eventually(60, "the pod running from the pulled image", || {
        a.pod("pulled")
            .is_some_and(|p| p["status"]["phase"] == "Running")
    });
    let describe = a.ok(&["describe", "pod", "pulled"]);
    assert!(describe.contains("Successfully pulled image"), "{describe}");
    assert!(a.ok(&["image", "ls"]).contains(&image));

    let other = format!("{}/flotilla/busybox:multi", reg.addr);
    let out = a.ok(&["image", "pull", &other]);
    assert!(
        out.starts_with(&format!("{other} pulled ({digest}, 3 layers")),
        "{out}"
    );
    // Removing an image a container uses keeps its layers.
    a.ok(&["image", "rm", &image]);
    let layers = std::fs::read_dir(a.data_dir().join("images/layers"))
        .unwrap()
        .count();
    assert_eq!(layers, 3);

    let bad = a.cli(&["image", "pull", &format!("{}/flotilla/absent:1", reg.addr)]);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("flotilla/absent:1"), "{err}");

    // A pod whose image cannot be pulled says so.
    let m = crate::harness::manifest(
        &a,
        "bad.yaml",
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: nopull}}\nspec:\n  containers:\n  - name: app\n    image: {}/flotilla/absent:1\n",
            reg.addr
        ),
    );
    a.ok(&["apply", "-f", &m]);
    a.eventually(30, "ErrImagePull or ImagePullBackOff", || {
        let r = a.container_status("nopull")["state"]["waiting"]["reason"].clone();
        r == "ErrImagePull" || r == "ImagePullBackOff"
    });
}
