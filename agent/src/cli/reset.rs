//! `flotilla reset [--data-dir DIR]`: stops and removes every container, pod sandbox and pod
//! file of a node whose agent is stopped (containers outlive their agent by design). The node's
//! identity and store stay; `cluster-in-a-box.sh down` and uninstalling use this. With
//! `--network` it also removes what the agent made in the network namespace it is run in: the
//! nftables table `inet flotilla`, the pod bridge (with the cluster DNS address and the
//! service route) and the VXLAN device. Run it where the agent ran.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;

#[derive(Debug, Args)]
pub struct ResetArgs {
    #[arg(long, default_value = "/var/lib/flotilla", value_name = "DIR")]
    pub data_dir: PathBuf,
    /// Also remove the agent's network pieces in this network namespace (nftables table
    /// `inet flotilla`, bridge `flotilla0`, device `flotilla.1`).
    #[arg(long)]
    pub network: bool,
}

pub fn run(a: ResetArgs) -> Result<i32> {
    if !a.data_dir.is_dir() {
        bail!("--data-dir: {} is not a directory", a.data_dir.display());
    }
    // The agent holds DIR/agent.lock while it runs (however it was started).
    let _lock = match crate::cluster::identity::lock_data_dir(&a.data_dir)? {
        Some(l) => l,
        None => bail!(
            "an agent is running on {}: stop it first (its pods would be restarted)",
            a.data_dir.display()
        ),
    };
    crate::node::pods::remove_all(&a.data_dir);
    // The parent of every pod cgroup, once empty (removal fails while other pods use it).
    flotilla_runtime::cgroups::remove("/flotilla");
    println!(
        "removed every container and pod of {}",
        a.data_dir.display()
    );
    if a.network {
        let mut failed = false;
        let mut report = |what: &str, r: Result<(), flotilla_netproxy::NetError>| match r {
            Ok(()) => println!("removed {what}"),
            Err(e) => {
                eprintln!("could not remove {what}: {e}");
                failed = true;
            }
        };
        let table = flotilla_netproxy::services::TABLE;
        report(
            &format!("the nftables table inet {table}"),
            flotilla_netproxy::services::nft(
                None,
                &format!("add table inet {table}\ndelete table inet {table}\n"),
            ),
        );
        let cidr = "10.42.0.0/24".parse().expect("a CIDR");
        let net = flotilla_netproxy::podnet::PodNetwork::new(
            crate::node::pods::BRIDGE,
            cidr,
            &a.data_dir.join("net"),
        );
        report(
            &format!("the bridge {}", crate::node::pods::BRIDGE),
            net.remove_bridge(),
        );
        report(
            &format!("the device {}", flotilla_netproxy::overlay::VXLAN_DEV),
            flotilla_netproxy::overlay::remove_device(),
        );
        if failed {
            return Ok(1);
        }
    }
    Ok(0)
}
