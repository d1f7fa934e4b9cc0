//! Shared by the runtime's integration tests: a node-like temporary dir with the test image and a
//! runtime, which deletes every container the test made (and their cgroups) on drop, also when
//! the test fails.
#![allow(dead_code)] // each test binary uses part of it

use std::cell::RefCell;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use flotilla_runtime::cgroups;
use flotilla_runtime::container::{Exit, Runtime, Stdio, wait};
use flotilla_runtime::image::ImageStore;
use flotilla_runtime::logs::LogConfig;
use flotilla_runtime::spec::ContainerSpec;

static N: AtomicU32 = AtomicU32::new(0);

/// A unique name for a test object: `flt-t<pid>-<n>-<tag>`, so leftovers can be traced.
pub fn unique(tag: &str) -> String {
    format!(
        "flt-t{}-{}-{tag}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

pub struct Node {
    pub dir: tempfile::TempDir,
    pub rt: Runtime,
    pub layers: Vec<PathBuf>,
    /// Containers to delete on drop: (id, cgroup path).
    made: RefCell<Vec<(String, String)>>,
}

/// A runtime on `root` whose shim is the package's `flotilla-shim` program.
pub fn runtime(root: &std::path::Path) -> Runtime {
    Runtime::open(root)
        .unwrap()
        .with_shim(PathBuf::from(env!("CARGO_BIN_EXE_flotilla-shim")), vec![])
}

impl Node {
    pub fn new() -> Node {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let dir = tempfile::Builder::new()
            .prefix("flotilla-rt-")
            .tempdir()
            .unwrap();
        let images = ImageStore::open(&dir.path().join("images")).unwrap();
        images
            .import(&flotilla_runtime::testing::test_image(dir.path()))
            .unwrap();
        let layers = images.resolve("flotilla.local/busybox:1").unwrap().layers;
        let rt = runtime(&dir.path().join("runtime"));
        Node {
            dir,
            rt,
            layers,
            made: Default::default(),
        }
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("runtime")
    }

    /// A `/bin/sh -c SCRIPT` container spec with a unique id, deleted when the node drops.
    pub fn spec(&self, tag: &str, script: &str) -> ContainerSpec {
        let id = unique(tag);
        let mut s = ContainerSpec::new(&id, &["/bin/sh", "-c", script]);
        s.cgroup_path = format!("/flotilla-test/{id}");
        self.made.borrow_mut().push((id, s.cgroup_path.clone()));
        s
    }

    /// Log files of a container run without a shim.
    pub fn logs(&self, id: &str) -> (PathBuf, PathBuf) {
        (
            self.dir.path().join(format!("{id}.out")),
            self.dir.path().join(format!("{id}.err")),
        )
    }

    /// The log config of a container run under its shim.
    pub fn log(&self, id: &str, max_bytes: u64, keep: u32) -> LogConfig {
        LogConfig {
            path: self.dir.path().join("logs").join(format!("{id}.log")),
            max_bytes,
            keep,
        }
    }

    /// Starts a container as this process's child (no shim); returns its pid.
    pub fn start(&self, spec: &ContainerSpec) -> i32 {
        let (out, err) = self.logs(&spec.id);
        self.rt
            .run(spec, &self.layers, Stdio::files(&out, &err).unwrap())
            .unwrap()
    }

    /// Runs a container to its end: (exit, stdout, stderr).
    pub fn run(&self, spec: &ContainerSpec) -> (Exit, String, String) {
        let pid = self.start(spec);
        let exit = wait(pid).unwrap();
        let (out, err) = self.logs(&spec.id);
        (
            exit,
            std::fs::read_to_string(out).unwrap(),
            std::fs::read_to_string(err).unwrap(),
        )
    }
}

impl Node {
    /// Deletes every container the test made (also done on drop).
    pub fn delete_containers(&self) {
        for (id, cg) in self.made.borrow_mut().drain(..) {
            let _ = self.rt.delete(&id, &cg);
        }
        cgroups::remove("/flotilla-test");
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.delete_containers();
    }
}
