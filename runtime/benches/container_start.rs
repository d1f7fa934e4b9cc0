//! Container start benchmark: create + start + exit + delete of `/bin/true` from the busybox test
//! image, Flotilla's runtime (libcontainer) beside `runc run` and `crun run` on the same bundle,
//! in the same run; and the import time of the 3-layer test image beside plain `tar`.
//!
//! `cargo bench -p flotilla-runtime --bench container_start -- [--runs N]`
//! (or `scripts/bench/runtime.sh`). Prints figures; asserts nothing about time.

use std::path::PathBuf;
use std::process::{Command, Stdio as PStdio};
use std::time::{Duration, Instant};

use flotilla_runtime::container::{Runtime, Stdio, wait};
use flotilla_runtime::image::ImageStore;
use flotilla_runtime::rootfs::{mount_overlay, unmount_overlay};
use flotilla_runtime::spec::{ContainerSpec, oci_spec};

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn stats(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    (
        ms(v[v.len() / 2]),
        ms(v[((v.len() as f64 - 1.0) * 0.99).round() as usize]),
    )
}

fn run_quiet(cmd: &mut Command) -> bool {
    cmd.stdout(PStdio::null())
        .stderr(PStdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `--crun-loop N BUNDLE ROOT`: runs inside `unshare -m --propagation private`, where
/// /sys/fs/cgroup/unified can be unmounted (Debian's crun 1.8 refuses hybrid layouts), and
/// prints one duration in nanoseconds per run.
fn crun_loop() {
    let n: usize = arg("--crun-loop").unwrap().parse().unwrap();
    let bundle = arg("--bundle").unwrap();
    let root = arg("--root").unwrap();
    let _ = nix::mount::umount2("/sys/fs/cgroup/unified", nix::mount::MntFlags::MNT_DETACH);
    for i in 0..n {
        let t = Instant::now();
        let ok = run_quiet(Command::new("crun").args([
            "--root",
            &root,
            "run",
            "-b",
            &bundle,
            &format!("bench-crun-{i}"),
        ]));
        let d = t.elapsed();
        if !ok {
            eprintln!("crun run failed");
            std::process::exit(1);
        }
        println!("{}", d.as_nanos());
    }
}

/// The first line of `PROGRAM --version`.
fn version_of(program: &str) -> String {
    let out = Command::new(program)
        .arg("--version")
        .output()
        .map(|o| o.stdout)
        .unwrap_or_default();
    String::from_utf8_lossy(&out)
        .lines()
        .next()
        .unwrap_or(program)
        .to_string()
}

fn main() {
    if arg("--crun-loop").is_some() {
        return crun_loop();
    }
    let runs: usize = arg("--runs").and_then(|r| r.parse().ok()).unwrap_or(100);
    let dir = tempfile::Builder::new()
        .prefix("flotilla-bench-rt-")
        .tempdir()
        .unwrap();
    let archive = flotilla_runtime::testing::test_image(dir.path());

    // Import of the 3-layer image into a fresh store, beside tar unpacking the same bytes.
    let mut imports = Vec::new();
    let mut tars = Vec::new();
    for i in 0..10 {
        let store_dir = dir.path().join(format!("store-{i}"));
        let t = Instant::now();
        ImageStore::open(&store_dir)
            .unwrap()
            .import(&archive)
            .unwrap();
        imports.push(t.elapsed());
        let out = dir.path().join(format!("tar-{i}"));
        std::fs::create_dir_all(&out).unwrap();
        let t = Instant::now();
        assert!(run_quiet(
            Command::new("tar")
                .arg("-xf")
                .arg(&archive)
                .arg("-C")
                .arg(&out)
        ));
        for blob in std::fs::read_dir(out.join("blobs/sha256"))
            .unwrap()
            .flatten()
        {
            // Layers are the gzip blobs; unpack each as an importer must.
            let p = blob.path();
            let gz = std::fs::read(&p)
                .map(|b| b.starts_with(&[0x1f, 0x8b]))
                .unwrap_or(false);
            if gz {
                let l = out.join(format!(
                    "layer-{}",
                    p.file_name().unwrap().to_string_lossy()
                ));
                std::fs::create_dir_all(&l).unwrap();
                assert!(run_quiet(
                    Command::new("tar").arg("-xzf").arg(&p).arg("-C").arg(&l)
                ));
            }
        }
        tars.push(t.elapsed());
    }
    let store = ImageStore::open(&dir.path().join("store-0")).unwrap();
    let layers = store.resolve("flotilla.local/busybox:1").unwrap().layers;

    // Flotilla: run + wait + delete, as `runc run` and `crun run` do.
    let rt = Runtime::open(&dir.path().join("runtime")).unwrap();
    let null = dir.path().join("null.log");
    let mut flotilla = Vec::new();
    for i in 0..runs {
        let mut spec = ContainerSpec::new(&format!("bench-f-{i}"), &["/bin/true"]);
        spec.cgroup_path = format!("/flotilla-bench/f-{i}");
        let t = Instant::now();
        let pid = rt
            .run(&spec, &layers, Stdio::files(&null, &null).unwrap())
            .unwrap();
        let exit = wait(pid).unwrap();
        rt.delete(&spec.id, &spec.cgroup_path).unwrap();
        flotilla.push(t.elapsed());
        assert_eq!(exit.code, 0);
    }

    // Resident memory of a shim holding a running container.
    let shim_rt = Runtime::open(&dir.path().join("runtime"))
        .unwrap()
        .with_shim(PathBuf::from(env!("CARGO_BIN_EXE_flotilla-shim")), vec![]);
    let mut spec = ContainerSpec::new("bench-shim", &["/bin/sleep", "30"]);
    spec.cgroup_path = "/flotilla-bench/shim".into();
    let log = flotilla_runtime::logs::LogConfig {
        path: dir.path().join("shim.log"),
        max_bytes: 1 << 20,
        keep: 1,
    };
    shim_rt.start(&spec, &layers, log).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let started: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("runtime/containers/bench-shim/shim.json")).unwrap(),
    )
    .unwrap();
    let shim_pid = started["shimPid"].as_i64().unwrap();
    // RSS counts the binary's pages, which every shim shares through the page cache; the
    // private part (smaps_rollup Private_*) is what each more container costs.
    let field = |file: &str, key: &str| -> f64 {
        std::fs::read_to_string(format!("/proc/{shim_pid}/{file}"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with(key))
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
            .sum()
    };
    let shim_rss_kib = field("status", "VmRSS:");
    let shim_private_kib = field("smaps_rollup", "Private_");
    shim_rt
        .delete("bench-shim", "/flotilla-bench/shim")
        .unwrap();

    // One bundle for runc and crun: the same overlay rootfs and the same spec.
    let bundle = dir.path().join("bundle");
    std::fs::create_dir_all(&bundle).unwrap();
    let rootfs = mount_overlay(&layers, &bundle, false).unwrap();
    let mut spec = ContainerSpec::new("bench-peer", &["/bin/true"]);
    spec.cgroup_path = "/flotilla-bench/peer".into();
    std::fs::write(
        bundle.join("config.json"),
        serde_json::to_vec_pretty(&oci_spec(&spec, &rootfs)).unwrap(),
    )
    .unwrap();
    let mut runc = Vec::new();
    let runc_root = dir.path().join("runc-state");
    let runc_ok = Command::new("runc").arg("--version").output().is_ok();
    for i in 0..if runc_ok { runs } else { 0 } {
        let t = Instant::now();
        let ok = run_quiet(
            Command::new("runc")
                .arg("--root")
                .arg(&runc_root)
                .args(["run", "-b"])
                .arg(&bundle)
                .arg(format!("bench-runc-{i}")),
        );
        runc.push(t.elapsed());
        assert!(ok, "runc run failed");
    }
    let crun: Vec<Duration> = if Command::new("crun").arg("--version").output().is_ok() {
        let out = Command::new("unshare")
            .args(["-m", "--propagation", "private"])
            .arg(std::env::current_exe().unwrap())
            .args(["--crun-loop", &runs.to_string(), "--bundle"])
            .arg(&bundle)
            .arg("--root")
            .arg(dir.path().join("crun-state"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.parse().ok())
            .map(Duration::from_nanos)
            .collect()
    } else {
        vec![]
    };
    let _ = unmount_overlay(&bundle, true);
    flotilla_runtime::cgroups::remove("/flotilla-bench");

    println!();
    println!(
        "Container start benchmark: /bin/true from flotilla.local/busybox:1, {runs} runs each, {} CPUs",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    println!(
        "(create + start + exit + delete; runc and crun `run` the same bundle: same rootfs, same config.json)"
    );
    println!();
    println!(
        "{:<34} {:>12} {:>12} {:>16}",
        "runtime", "median", "p99", "median vs crun"
    );
    let crun_m = (!crun.is_empty()).then(|| stats(crun.clone()).0);
    let row = |name: &str, v: &Vec<Duration>| {
        if v.is_empty() {
            println!("{name:<34} {:>12} {:>12} {:>16}", "not run", "-", "-");
            return;
        }
        let (m, p) = stats(v.clone());
        let rel = crun_m
            .map(|c| format!("{:.2}x", m / c))
            .unwrap_or_else(|| "-".into());
        println!("{name:<34} {:>9.1} ms {:>9.1} ms {rel:>16}", m, p);
    };
    row("flotilla (libcontainer 0.7)", &flotilla);
    row(&format!("runc ({})", version_of("runc")), &runc);
    row(&format!("crun ({})", version_of("crun")), &crun);
    let (im, ip) = stats(imports);
    let (tm, tp) = stats(tars);
    println!();
    println!(
        "{:<34} {:>12} {:>12}",
        "import of the 3-layer test image", "median", "p99"
    );
    println!(
        "{:<34} {:>9.1} ms {:>9.1} ms",
        "flotilla image import (verified)", im, ip
    );
    println!(
        "{:<34} {:>9.1} ms {:>9.1} ms",
        "tar -x of archive and layers", tm, tp
    );
    println!();
    println!(
        "shim memory per running container: {:.2} MiB resident, {:.2} MiB private (containerd's shim: 13 MB resident on these hosts, Docker 20.10)",
        shim_rss_kib / 1024.0,
        shim_private_kib / 1024.0
    );
}
