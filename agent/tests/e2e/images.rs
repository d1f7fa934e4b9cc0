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
