//! Builds `flotilla-pump` (`pump/main.rs` with `src/pump.rs`, standard library only) with the
//! same `rustc` for the same target, small and static, for the runtime to carry
//! (`include_bytes!` in `src/shim.rs`). A shim executes it once its container runs, so that
//! holding a container costs about 1 MiB rather than the whole agent binary.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo::rerun-if-changed=pump/main.rs");
    println!("cargo::rerun-if-changed=src/pump.rs");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR")).join("flotilla-pump");
    let target = env::var("TARGET").expect("TARGET");
    let host = env::var("HOST").expect("HOST");
    let mut cmd = Command::new(env::var_os("RUSTC").unwrap_or_else(|| "rustc".into()));
    cmd.args([
        "--edition",
        "2024",
        "--crate-name",
        "flotilla_pump",
        "--crate-type",
        "bin",
    ])
    .args([
        "-C",
        "opt-level=s",
        "-C",
        "panic=abort",
        "-C",
        "codegen-units=1",
    ])
    .args(["-C", "strip=symbols", "-C", "target-feature=+crt-static"])
    .arg("-o")
    .arg(&out)
    .arg("pump/main.rs");
    if target != host {
        // Cross builds (a Raspberry Pi's aarch64 or armv7): the linker cargo was given.
        let var = format!(
            "CARGO_TARGET_{}_LINKER",
            target.to_uppercase().replace(['-', '.'], "_")
        );
        println!("cargo::rerun-if-env-changed={var}");
        cmd.args(["--target", &target]);
        if let Some(linker) = env::var_os(&var) {
            let mut arg = std::ffi::OsString::from("linker=");
            arg.push(linker);
            cmd.arg("-C").arg(arg);
        }
    }
    let status = cmd.status().expect("running rustc for flotilla-pump");
    assert!(status.success(), "building flotilla-pump failed: {status}");
    // Its name on disk carries a hash of its bytes (FNV-1a), so a new build never overwrites
    // the program that running shims execute.
    let bytes = std::fs::read(&out).expect("reading flotilla-pump");
    let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    println!("cargo::rustc-env=FLOTILLA_PUMP_HASH={hash:016x}");
}
