//! `flotilla reset [--data-dir DIR]`: stops and removes every container, pod sandbox and pod
//! file of a node whose agent is stopped (containers outlive their agent by design). The node's
//! identity and store stay; `cluster-in-a-box.sh down` and uninstalling use this.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;

#[derive(Debug, Args)]
pub struct ResetArgs {
    #[arg(long, default_value = "/var/lib/flotilla", value_name = "DIR")]
    pub data_dir: PathBuf,
}

pub fn run(a: ResetArgs) -> Result<i32> {
    if !a.data_dir.is_dir() {
        bail!("--data-dir: {} is not a directory", a.data_dir.display());
    }
    let pid_busy = std::fs::read_dir("/proc")?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != std::process::id())
        .any(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let args: Vec<&[u8]> = cmd.split(|b| *b == 0).collect();
            args.get(1) == Some(&&b"agent"[..])
                && args.windows(2).any(|w| {
                    w[0] == b"--data-dir"
                        && std::path::Path::new(std::str::from_utf8(w[1]).unwrap_or(""))
                            == a.data_dir
                })
        });
    if pid_busy {
        bail!(
            "an agent is running on {}: stop it first (its pods would be restarted)",
            a.data_dir.display()
        );
    }
    crate::node::pods::remove_all(&a.data_dir);
    // The parent of every pod cgroup, once empty (removal fails while other pods use it).
    flotilla_runtime::cgroups::remove("/flotilla");
    println!(
        "removed every container and pod of {}",
        a.data_dir.display()
    );
    Ok(0)
}
