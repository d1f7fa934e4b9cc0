//! The agent as a library: [`Agent::start`] brings up this node (identity, store, quorum,
//! gossip, pod network, service proxy, DNS, API, controllers, the pod manager and the
//! background loops) and [`Agent::shutdown`] stops them and waits for every task. The
//! `flotilla agent` command parses its flags into a [`Config`] and runs one until a signal.
//!
//! Shutdown drains rather than aborts: the agent's own loops (node status, compaction,
//! bootstrap objects, certificate renewal) watch one cancellation token between steps, so a
//! write under way finishes; the API stops taking requests and finishes those it has; the
//! controllers and pod manager stop at the end of their pass; then gossip, the quorum and the
//! transport close, and the store last. The proxy, DNS, overlay and gossip-reading loops hold
//! no write of their own between awaits (their kernel work is synchronous calls) and are
//! stopped where they wait. Containers keep running under their shims, and the proxy's rules
//! stay in the kernel, so pods are served while the agent is away.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info, warn};

use crate::api::{self, ApiState};
use crate::cluster::Identity;
use crate::cluster::identity::default_node_name;
use crate::node::status::{HostResources, node_object};
use crate::store::{Key, Op, SecretCipher, Store, Write, new_uid};

/// How to start an agent: the flags of `flotilla agent`.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Make a new cluster with this node as its first member.
    #[arg(long, conflicts_with = "join")]
    pub init: bool,
    /// Join the cluster of the member at HOST:PORT.
    #[arg(long, value_name = "HOST:PORT", requires = "token")]
    pub join: Option<String>,
    /// Join token printed by the first node (DIR/join-token). Also read from $FLOTILLA_TOKEN,
    /// which keeps it off the process list (install.sh puts it in a root-only file).
    #[arg(long, env = "FLOTILLA_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Where the node keeps its state.
    #[arg(long, default_value = "/var/lib/flotilla", value_name = "DIR")]
    pub data_dir: PathBuf,
    /// This node's name (default: the host name).
    #[arg(long)]
    pub node_name: Option<String>,
    /// Address the HTTPS API listens on.
    #[arg(long, default_value = "0.0.0.0:7443")]
    pub api_addr: SocketAddr,
    /// Address (UDP) the cluster's QUIC endpoint listens on: joins, and later gossip and Raft.
    /// The address it bound is written to DIR/cluster-addr.
    #[arg(long, default_value = "0.0.0.0:7946")]
    pub cluster_addr: SocketAddr,
    /// Address other nodes and users reach this node at (added to its certificate).
    #[arg(long)]
    pub advertise_address: Option<IpAddr>,
    /// Most voters of the quorum (1, 3 or 5); further nodes are learners that only follow.
    /// The node that leads applies its own value: give every node the same.
    #[arg(long, default_value_t = 3, value_parser = parse_voters)]
    pub max_voters: usize,
    /// Milliseconds of a follower's election timeout (1 to 1.25 times this, at random). After
    /// hearing a leader, a follower also waits out the leader's lease (1.25 times this) before
    /// it stands: 2.25-2.5 s of silence at the default. Raise it on slow SD cards and links.
    #[arg(long, default_value_t = 1000, value_name = "MS")]
    pub election_timeout_ms: u64,
    /// Milliseconds between the leader's heartbeats (well below the election timeout).
    #[arg(long, default_value_t = 250, value_name = "MS")]
    pub heartbeat_ms: u64,
    /// Days before its certificate ends that a node renews it (certificates last 365 days;
    /// the node checks hourly and swaps to the new one without a restart).
    #[arg(long, default_value_t = 120, value_name = "DAYS")]
    pub renew_cert_within_days: u64,
    /// Seconds a node may be unreachable before its controller-owned pods are replaced on
    /// other nodes (Kubernetes waits 300 s).
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    pub node_grace: u64,
    /// Seconds a deleted pod that backs a Service keeps running before its preStop hook and
    /// SIGTERM, so every node has taken it out of the Service first (no failed request during
    /// a rollout). Bounded by the pod's termination grace period.
    #[arg(long, default_value_t = 2, value_name = "SECONDS")]
    pub endpoint_drain: u64,
    /// Seconds between readings of the node's and its containers' CPU and memory, the
    /// resource metrics `kubectl top` shows (metrics-server's `--metric-resolution`); 0 turns
    /// sampling off.
    #[arg(long, default_value_t = 15, value_name = "SECONDS")]
    pub metrics_resolution: u64,
    /// Seconds between evaluations of the HorizontalPodAutoscalers, on the leader
    /// (kube-controller-manager's `--horizontal-pod-autoscaler-sync-period`).
    #[arg(long, default_value_t = 15, value_name = "SECONDS")]
    pub horizontal_pod_autoscaler_sync_period: u64,
    /// Learners the leader keeps beyond the voters, ready to replace one; further nodes pull
    /// the log from peers (found by gossip), so the voters' load does not grow with the fleet.
    /// The leader's value applies: give every node the same.
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub standby_learners: usize,
    /// Seconds a voter may be unreachable before the leader gives its vote to a healthy node
    /// (the leader's value applies: give every node the same).
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    pub replace_voter_after: u64,
    /// Log revisions kept for watches before compaction.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(i64).range(0..))]
    pub keep_revisions: i64,
    /// Seconds between compactions of the log (and WAL checkpoints).
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    pub compact_interval: u64,
    /// This node's pod addresses. Without it the node keeps the one it had, or gets the
    /// lowest /24 of --cluster-cidr no other node holds (the first node: 10.42.0.0/24).
    #[arg(long)]
    pub pod_cidr: Option<flotilla_netproxy::podnet::Cidr>,
    /// Every pod address of the cluster (each node's --pod-cidr lies inside it): service
    /// traffic from outside it is masqueraded, pods' traffic to outside it too.
    #[arg(long, default_value = "10.42.0.0/16")]
    pub cluster_cidr: flotilla_netproxy::podnet::Cidr,
    /// `bridge`: pods get an address on the bridge `flotilla0`, and Services are programmed in
    /// nftables (table `inet flotilla`); `none`: pods only have loopback, and no network
    /// device, route or rule is made in the agent's namespace.
    #[arg(long, default_value = "bridge", value_parser = ["bridge", "none"])]
    pub pod_network: String,
    /// How pod networks of different nodes reach each other: `vxlan` (an overlay that works
    /// across any IP network) or `host-gw` (plain routes; the nodes share one link).
    #[arg(long, default_value = "vxlan")]
    pub backend: flotilla_netproxy::overlay::Backend,
    /// Threads that run the agent's tasks (the API, the quorum, gossip, controllers); disk
    /// syncs and container work run on threads of their own beside them. One is the lightest
    /// and fastest on small boards: tasks hand work to each other without waking a thread
    /// (docs/DECISIONS.md). Raise it for an API serving many clients on a many-core node.
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    pub worker_threads: u16,
}

/// A running node. Dropping it without [`Agent::shutdown`] leaves its tasks running.
pub struct Agent {
    node: String,
    api_addr: SocketAddr,
    stop: CancellationToken,
    tasks: TaskTracker,
    /// The API server, until it is found stopped.
    server: Option<JoinHandle<Result<()>>>,
    api: axum_server::Handle<SocketAddr>,
    controllers: crate::controller::Controllers,
    autoscaler: crate::controller::hpa::Autoscaler,
    pods: crate::node::pods::PodManager,
    gossip: chitchat::ChitchatHandle,
    quorum: std::sync::Arc<crate::cluster::raft::Quorum>,
    transport: crate::cluster::transport::Transport,
    cluster: JoinHandle<()>,
    /// Loops that keep no write of their own between awaits (see the module).
    waiting: Vec<JoinHandle<()>>,
    store: Store,
    _lock: nix::fcntl::Flock<std::fs::File>,
}

impl Agent {
    /// This node's name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Where the API listens (the port the system gave, for `--api-addr ...:0`).
    pub fn api_addr(&self) -> SocketAddr {
        self.api_addr
    }

    /// Resolves only if the API server stops by itself (an error: it should not).
    /// Cancel-safe: a `select!` may drop it and call it again.
    pub async fn failed(&mut self) -> Result<()> {
        let Some(server) = self.server.as_mut() else {
            return std::future::pending().await;
        };
        let r = server.await;
        self.server = None;
        r.context("API task")??;
        bail!("the API server stopped")
    }

    /// Stops every part and waits for each (see the module for the order).
    pub async fn shutdown(self) {
        self.stop.cancel();
        self.api.graceful_shutdown(Some(Duration::from_secs(5)));
        if let Some(server) = self.server {
            let _ = server.await;
        }
        self.controllers.shutdown().await;
        self.autoscaler.shutdown().await;
        // The containers keep running under their shims; a new agent re-adopts them.
        self.pods.shutdown().await;
        self.tasks.close();
        self.tasks.wait().await;
        for task in self.waiting {
            task.abort();
            let _ = task.await;
        }
        let _ = self.gossip.shutdown().await;
        self.quorum.shutdown().await;
        self.transport.close();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.cluster).await;
        self.store.close().await;
        info!(node = %self.node, "agent stopped");
    }

    /// Starts (or resumes) the node `a` describes.
    pub async fn start(a: Config) -> Result<Agent> {
        if a.heartbeat_ms == 0 || a.heartbeat_ms * 2 > a.election_timeout_ms {
            bail!(
                "--heartbeat-ms {} must be above 0 and at most half of --election-timeout-ms {}",
                a.heartbeat_ms,
                a.election_timeout_ms
            );
        }
        // One agent per data dir: held until this function returns (or the process ends).
        std::fs::create_dir_all(&a.data_dir)
            .with_context(|| format!("creating {}", a.data_dir.display()))?;
        let lock = crate::cluster::identity::lock_data_dir(&a.data_dir)
            .with_context(|| format!("locking {}", a.data_dir.display()))?
            .with_context(|| format!("another agent is running on {}", a.data_dir.display()))?;
        let identity = if Identity::exists(&a.data_dir) {
            let id = Identity::load(&a.data_dir)?;
            if let Some(n) = &a.node_name
                && *n != id.node.name
            {
                bail!(
                    "--node-name {n}: {} holds node {:?}; a node keeps its name (leave the flag out, or give another --data-dir)",
                    a.data_dir.display(),
                    id.node.name
                );
            }
            info!(node = %id.node.name, dir = %a.data_dir.display(), "resuming node");
            id
        } else if a.init {
            if a.token.is_some() {
                bail!(
                    "--token (or $FLOTILLA_TOKEN) is for --join: --init makes a new cluster and its own tokens"
                );
            }
            let name = a.node_name.clone().unwrap_or_else(default_node_name);
            let extra: Vec<IpAddr> = a.advertise_address.into_iter().collect();
            let id = Identity::init(&a.data_dir, &name, &extra)?;
            info!(node = %id.node.name, dir = %a.data_dir.display(), "initialised a new cluster");
            id
        } else if let Some(member) = &a.join {
            let token: crate::cluster::join::JoinToken = a
                .token
                .as_deref()
                .unwrap_or_default()
                .trim()
                .parse()
                .map_err(|e| anyhow::anyhow!("--token: {e}"))?;
            let member = resolve(member).with_context(|| format!("--join {member}"))?;
            let name = a.node_name.clone().unwrap_or_else(default_node_name);
            let addrs: Vec<IpAddr> = a.advertise_address.into_iter().collect();
            let joined = crate::cluster::join::join(member, &token, &name, &addrs).await?;
            let id = Identity::from_join(&a.data_dir, &name, &joined)?;
            std::fs::write(a.data_dir.join("join-addr"), format!("{member}\n"))
                .context("writing DIR/join-addr")?;
            info!(node = %name, via = %member, "joined the cluster");
            id
        } else {
            bail!(
                "{} holds no node: start with --init (new cluster) or --join HOST:PORT --token T",
                a.data_dir.display()
            );
        };
        let node = identity.node.name.clone();
        let stop = CancellationToken::new();
        let tasks = TaskTracker::new();

        let cipher = SecretCipher::load(&a.data_dir.join("secrets.key"))?;
        let store = Store::open(&a.data_dir.join("flotilla.db"), cipher)
            .await
            .with_context(|| format!("opening {}", a.data_dir.join("flotilla.db").display()))?;
        let host_ip = a
            .advertise_address
            .map(|a| a.to_string())
            .unwrap_or_else(|| "127.0.0.1".into());

        // The cluster endpoint: QUIC with mutual TLS against the cluster CA. A node holding the CA
        // key admits joiners whose token secret matches DIR/join-token.
        let transport = crate::cluster::transport::Transport::bind(
            a.cluster_addr,
            &crate::cluster::transport::Credentials::load(&a.data_dir)?,
        )?;
        let cluster_addr = transport.local_addr()?;
        std::fs::write(a.data_dir.join("cluster-addr"), format!("{cluster_addr}\n"))
            .context("writing DIR/cluster-addr")?;
        // Any member admits joiners, with the CA and tokens the founder put in the store.
        let admission = crate::cluster::Admit::Store(crate::cluster::tokens::Admitter {
            store: store.clone(),
            api_token: identity.api_token.clone(),
            cluster_id: identity.node.cluster_id.clone(),
        });
        let quorum_cell = crate::cluster::QuorumCell::default();
        let (gossip_tx, gossip_rx) = tokio::sync::mpsc::channel(1024);
        let cluster = transport.serve(crate::cluster::handler(
            node.clone(),
            Some(std::sync::Arc::new(admission)),
            Some(gossip_tx),
            quorum_cell.clone(),
        ));
        info!(node = %node, addr = %cluster_addr, "cluster endpoint listening (QUIC)");

        // The quorum: every write of the store goes through it (a one-voter cluster commits at
        // once). The first node initialises it; a joined node asks to be enrolled until it is.
        let advertised = match (a.advertise_address, cluster_addr.ip().is_unspecified()) {
            (Some(ip), _) => SocketAddr::new(ip, cluster_addr.port()),
            (None, true) => SocketAddr::from(([127, 0, 0, 1], cluster_addr.port())),
            (None, false) => cluster_addr,
        };
        let quorum = crate::cluster::raft::Quorum::start(
            &store,
            transport.clone(),
            crate::cluster::raft::Member {
                name: node.clone(),
                addr: advertised.to_string(),
            },
            crate::cluster::raft::RaftSettings {
                heartbeat: Duration::from_millis(a.heartbeat_ms),
                election_timeout: Duration::from_millis(a.election_timeout_ms),
                max_voters: a.max_voters,
                replace_after: Duration::from_secs(a.replace_voter_after),
                standby: a.standby_learners,
                ..Default::default()
            },
        )
        .await?;
        let _ = quorum_cell.set(quorum.clone());
        store.set_proposer(std::sync::Arc::new(crate::cluster::raft::quorum::Propose(
            quorum.clone(),
        )));
        let founder = a.data_dir.join("pki/ca.key").exists();
        let join_seeds: Vec<SocketAddr> = std::fs::read_to_string(a.data_dir.join("join-addr"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect();
        if founder {
            quorum.initialize().await?;
        } else if !quorum.is_member() {
            let (q, seeds) = (quorum.clone(), join_seeds.clone());
            let stop = stop.clone();
            tasks.spawn(
                async move { stop.run_until_cancelled(q.enroll_through(seeds)).await }
                    .instrument(tracing::info_span!("enroll", node = %node)),
            );
        }
        // Gossip: membership and liveness, seeded by the members Raft knows and the join address.
        let mut gossip_cfg =
            crate::cluster::GossipConfig::new(&node, &identity.node.cluster_id, advertised);
        gossip_cfg.seeds = quorum
            .metrics()
            .membership_config
            .membership()
            .nodes()
            .filter(|(id, _)| **id != quorum.id)
            .filter_map(|(_, m)| m.addr.parse().ok())
            .chain(join_seeds)
            .collect();
        let gossip = crate::cluster::start_gossip(
            &transport,
            gossip_rx,
            &gossip_cfg,
            vec![("address".into(), host_ip.clone())],
        )
        .await
        .context("starting gossip")?;
        let (observed, progress) =
            crate::cluster::share_progress(&gossip, store.clone(), quorum.clone(), node.clone());
        let (unreachable, liveness) = crate::cluster::watch_unreachable(
            observed.clone(),
            store.clone(),
            node.clone(),
            Duration::from_secs(5),
        );
        // The namespaces and this node's Node object; retried in the background, since a node
        // that cannot reach a quorum still runs its pods.
        let listener = std::net::TcpListener::bind(a.api_addr)
            .with_context(|| format!("binding the API to {}", a.api_addr))?;
        let bound = listener.local_addr()?;
        let port = bound.port();
        // The local CLI reaches the API where it listens: loopback when it listens everywhere.
        let local = match bound.ip() {
            ip if ip.is_unspecified() => format!("https://127.0.0.1:{port}"),
            std::net::IpAddr::V6(ip) => format!("https://[{ip}]:{port}"),
            ip => format!("https://{ip}:{port}"),
        };
        let admin = identity.write_admin_config(&local)?;
        info!(node = %node, addr = %listener.local_addr()?, config = %admin.display(), "API listening");

        let pod_cidr = resolve_pod_cidr(&a, &store, &node, port, founder).await?;
        gossip
            .chitchat()
            .lock()
            .await
            .self_node_state()
            .set("pod_cidr", pod_cidr.to_string());
        info!(node = %node, pod_cidr = %pod_cidr, "pod network");

        {
            let (store, node, addr, dir, cidr, stop) = (
                store.clone(),
                node.clone(),
                a.advertise_address,
                a.data_dir.clone(),
                pod_cidr,
                stop.clone(),
            );
            let span = tracing::info_span!("bootstrap", node = %node);
            tasks.spawn(
            async move {
                let mut wait = Duration::from_millis(200);
                loop {
                    match bootstrap(&store, &node, addr, port, &dir, cidr, founder).await {
                        Ok(()) => return,
                        Err(e) => {
                            warn!(error = %format!("{e:#}"), "writing the node's bootstrap objects; retrying")
                        }
                    }
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(wait) => {}
                    }
                    wait = (wait * 2).min(Duration::from_secs(10));
                }
            }
            .instrument(span),
        );
        }

        let images_dir = a.data_dir.join("images");
        let images = std::sync::Arc::new(
            flotilla_runtime::image::ImageStore::open(&images_dir)
                .with_context(|| format!("opening the image store {}", images_dir.display()))?,
        );
        let runtime_root = crate::node::pods::Node::runtime_root(&a.data_dir);
        let exe = std::env::current_exe().context("finding this program for the shims")?;
        let runtime = std::sync::Arc::new(
            flotilla_runtime::container::Runtime::open(&runtime_root)
                .with_context(|| format!("opening the runtime at {}", runtime_root.display()))?
                .with_shim(exe, vec!["shim".into()]),
        );
        let net = if a.pod_network == "bridge" {
            let net = flotilla_netproxy::podnet::PodNetwork::new(
                crate::node::pods::BRIDGE,
                pod_cidr,
                &a.data_dir.join("net"),
            )
            .with_mtu(a.backend.pod_mtu());
            net.ensure_bridge().with_context(|| {
                format!(
                    "making the pod network bridge {} with {} (or start with --pod-network none)",
                    crate::node::pods::BRIDGE,
                    pod_cidr
                )
            })?;
            if !a.cluster_cidr.contains(pod_cidr.addr) || a.cluster_cidr.prefix > pod_cidr.prefix {
                bail!(
                    "--pod-cidr {} is not inside --cluster-cidr {}",
                    pod_cidr,
                    a.cluster_cidr
                );
            }
            let bridged = flotilla_netproxy::podnet::enable_forwarding()
                .context("turning on IPv4 forwarding for the pod network")?;
            if !bridged {
                warn!(
                    "br_netfilter is not available: a pod reaching a Service whose endpoint is on this node may fail (load the br_netfilter module)"
                );
            }
            let (addr, prefix) = crate::node::services::SERVICE_CIDR;
            let service_cidr = flotilla_netproxy::podnet::Cidr { addr, prefix };
            net.route_to_bridge(service_cidr)
                .with_context(|| format!("routing the service network {service_cidr}"))?;
            Some(std::sync::Arc::new(net))
        } else {
            None
        };
        // Services in nftables, and cluster DNS for this node's pods on an address of the bridge.
        let mut proxy = None;
        let mut dns = None;
        if let Some(net) = &net {
            let (zones, zone) = tokio::sync::watch::channel(Default::default());
            proxy = Some(crate::node::services::spawn(
                store.clone(),
                node.clone(),
                flotilla_netproxy::services::ProxyConfig {
                    cluster_cidr: a.cluster_cidr,
                    egress: Some((pod_cidr, crate::node::pods::BRIDGE.to_string())),
                },
                zones,
            ));
            let dns_ip = crate::node::services::DNS_IP;
            net.add_bridge_address(dns_ip)
                .with_context(|| format!("adding the cluster DNS address {dns_ip}"))?;
            let upstreams = crate::node::dns::upstreams(
                &std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
            );
            let addr = std::net::SocketAddr::from((dns_ip, 53));
            dns = Some(
                crate::node::dns::serve(addr, zone, upstreams)
                    .await
                    .with_context(|| format!("serving cluster DNS on {addr}"))?,
            );
        }
        // The overlay to the other nodes' pod networks, from their Node objects.
        let overlay = match (&net, a.advertise_address) {
            (Some(_), Some(IpAddr::V4(ip))) => Some(crate::node::overlay::spawn(
                store.clone(),
                node.clone(),
                flotilla_netproxy::overlay::Overlay {
                    backend: a.backend,
                    node_ip: ip,
                    pod_cidr,
                    cluster: a.cluster_cidr,
                },
            )),
            (Some(_), other) => {
                warn!(
                    address = ?other,
                    "no IPv4 --advertise-address: pods on other nodes will not be reachable from this node's pods"
                );
                None
            }
            (None, _) => None,
        };
        let pods_node = crate::node::pods::Node {
            name: node.clone(),
            data: a.data_dir.clone(),
            host_ip: host_ip.clone(),
            runtime,
            images: images.clone(),
            net,
            endpoint_drain: Duration::from_secs(a.endpoint_drain),
        };
        let metrics =
            crate::node::metrics::Metrics::new(&node, Duration::from_secs(a.metrics_resolution));
        tasks.spawn(
            crate::node::metrics::sample(metrics.clone(), pods_node.runtime.clone(), stop.clone())
                .instrument(tracing::info_span!("metrics", node = %node)),
        );
        let state = ApiState::new(
            store.clone(),
            &identity.api_token,
            &node,
            images,
            images_dir,
            pods_node.clone(),
        )
        .with_metrics(metrics)
        .with_unreachable(unreachable.clone())
        .with_peers(&identity.ca_pem)?
        .with_voters(quorum.roles())
        .with_observed(observed);
        let state = std::sync::Arc::new(state);
        let handle = axum_server::Handle::new();
        let tls = axum_server::tls_rustls::RustlsConfig::from_config(std::sync::Arc::new(
            api::tls_config(&identity.cert_pem, &identity.key_pem)?,
        ));
        tasks.spawn(
            renew_certificates(
                CertRenewal {
                    dir: a.data_dir.clone(),
                    node: node.clone(),
                    addresses: a.advertise_address.into_iter().collect(),
                    within: Duration::from_secs(a.renew_cert_within_days * 86_400),
                    store: store.clone(),
                    transport: transport.clone(),
                    api_tls: tls.clone(),
                },
                stop.clone(),
            )
            .instrument(tracing::info_span!("certificates", node = %node)),
        );
        let state_for_samples = state.clone();
        let server = tokio::spawn(
            api::serve(listener, tls, state, handle.clone())
                .instrument(tracing::info_span!("api", node = %node)),
        );

        // Controllers and the scheduler run on the leader only.
        let controllers = crate::controller::spawn_all(
            store.clone(),
            node.clone(),
            quorum.leading(),
            crate::controller::runner::Lifecycle {
                unreachable: unreachable.clone(),
                grace: Duration::from_secs(a.node_grace),
            },
        );
        // Autoscalers read every node's samples through the API's fan-out.
        let samples: crate::controller::hpa::Samples = {
            let state = state_for_samples.clone();
            std::sync::Arc::new(move || {
                let state = state.clone();
                Box::pin(async move { api::metrics::samples(&state).await.unwrap_or_default() })
            })
        };
        let autoscaler = crate::controller::hpa::spawn(
            store.clone(),
            node.clone(),
            quorum.leading(),
            samples,
            Duration::from_secs(a.horizontal_pod_autoscaler_sync_period.max(1)),
        );
        let pods = crate::node::pods::spawn(store.clone(), pods_node);

        // The node's status (resources, pressure) checked every 10 s and written when it changed,
        // or every 5 minutes (liveness is gossip's job: a write per node every 10 s would cost
        // every node an fsync per node and tick).
        {
            let (store, node, dir, addr, stop) = (
                store.clone(),
                node.clone(),
                a.data_dir.clone(),
                host_ip.clone(),
                stop.clone(),
            );
            let span = tracing::info_span!("heartbeat", node = %node);
            tasks.spawn(
                async move {
                    let mut tick = tokio::time::interval(Duration::from_secs(10));
                    tick.tick().await;
                    let mut last_write = std::time::Instant::now();
                    loop {
                        tokio::select! {
                            _ = stop.cancelled() => return,
                            _ = tick.tick() => {}
                        }
                        let key = Key::new("Node", "", &node);
                        let Ok(Some(prev)) = store.get(&key).await else {
                            continue;
                        };
                        let Ok(prev) = crate::manifest::lifecycle::decode::<
                            k8s_openapi::api::core::v1::Node,
                        >(prev) else {
                            continue;
                        };
                        let now = crate::store::now_rfc3339();
                        let fresh = crate::node::status::keep_transitions(
                            with_api_port(
                                node_object(
                                    &node,
                                    &addr,
                                    HostResources::read_with_disk(&dir),
                                    &now,
                                ),
                                port,
                            ),
                            &prev,
                        );
                        if !crate::node::status::status_changed(&fresh, &prev)
                            && last_write.elapsed() < Duration::from_secs(300)
                        {
                            continue;
                        }
                        let w = Write {
                            now,
                            ops: vec![Op::Status {
                                object: serde_json::to_value(&fresh).expect("a Node serialises"),
                            }],
                        };
                        match store.write(&w).await {
                            Ok(_) => last_write = std::time::Instant::now(),
                            Err(e) => warn!(error = %e, "cannot write the node's status"),
                        }
                    }
                }
                .instrument(span),
            );
        }
        {
            let (store, stop) = (store.clone(), stop.clone());
            let (keep, every) = (a.keep_revisions, Duration::from_secs(a.compact_interval));
            tasks.spawn(
                async move {
                    let mut tick = tokio::time::interval(every);
                    tick.tick().await;
                    loop {
                        tokio::select! {
                            _ = stop.cancelled() => return,
                            _ = tick.tick() => {}
                        }
                        match store.compact(keep).await {
                            Ok(upto) => tracing::debug!(revision = upto, "compacted"),
                            Err(e) => warn!(error = %e, "compaction failed"),
                        }
                    }
                }
                .instrument(tracing::info_span!("compactor", node = %node)),
            );
        }

        let waiting = [Some(liveness), Some(progress), proxy, dns, overlay]
            .into_iter()
            .flatten()
            .collect();
        Ok(Agent {
            node,
            api_addr: bound,
            stop,
            tasks,
            server: Some(server),
            api: handle,
            controllers,
            autoscaler,
            pods,
            gossip,
            quorum,
            transport,
            cluster,
            waiting,
            store,
            _lock: lock,
        })
    }
}

/// Checks the node certificate at start and hourly; renews it (signed by the CA from the
/// store) when less than `within` is left or it lacks one of `addresses`, and reloads the
/// QUIC endpoint and the API.
struct CertRenewal {
    dir: PathBuf,
    node: String,
    addresses: Vec<IpAddr>,
    within: Duration,
    store: Store,
    transport: crate::cluster::transport::Transport,
    api_tls: axum_server::tls_rustls::RustlsConfig,
}

async fn renew_certificates(r: CertRenewal, stop: CancellationToken) {
    use crate::cluster::{certs, tokens};
    let CertRenewal {
        dir,
        node,
        addresses,
        within,
        store,
        transport,
        api_tls,
    } = r;
    let mut wait = Duration::from_secs(5);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        wait = Duration::from_secs(3600);
        let r: Result<()> = async {
            let pem = std::fs::read_to_string(dir.join("pki/node.crt"))?;
            let (_, not_after) = certs::validity(&pem)?;
            // An address this node now advertises that its certificate does not name (a new
            // --advertise-address on a restart): renewed at once, so peers can verify it.
            let named = certs::ip_addresses(&pem)?;
            let new_address = addresses.iter().any(|a| !named.contains(a));
            if !new_address
                && !certs::needs_renewal(not_after, chrono::Utc::now().timestamp(), within)
            {
                return Ok(());
            }
            let ca = store
                .get(&Key::new("Secret", tokens::NAMESPACE, tokens::CA_SECRET))
                .await?
                .context("no copy of the cluster CA in the store yet")?;
            let (cert, key) = certs::issue(
                &node,
                &addresses,
                &tokens::field(&ca, "ca.crt").context("ca.crt")?,
                &tokens::field(&ca, "ca.key").context("ca.key")?,
            )?;
            certs::install(&dir, &cert, &key)?;
            transport.reload(&crate::cluster::transport::Credentials::load(&dir)?)?;
            api_tls
                .reload_from_config(std::sync::Arc::new(api::tls_config(&cert, &key)?));
            let (_, until) = certs::validity(&cert)?;
            info!(
                until = %chrono::DateTime::from_timestamp(until, 0).map(|t| t.to_rfc3339()).unwrap_or_default(),
                "renewed the node certificate"
            );
            Ok(())
        }
        .await;
        if let Err(e) = r {
            warn!(error = %format!("{e:#}"), "checking the node certificate");
            wait = Duration::from_secs(60);
        }
    }
}

/// Records the node's API port where Kubernetes keeps the kubelet's
/// (`status.daemonEndpoints.kubeletEndpoint.Port`): other nodes forward logs and exec there.
fn with_api_port(
    mut node: k8s_openapi::api::core::v1::Node,
    port: u16,
) -> k8s_openapi::api::core::v1::Node {
    use k8s_openapi::api::core::v1::{DaemonEndpoint, NodeDaemonEndpoints};
    node.status.get_or_insert_default().daemon_endpoints = Some(NodeDaemonEndpoints {
        kubelet_endpoint: Some(DaemonEndpoint {
            port: i32::from(port),
        }),
    });
    node
}

/// `HOST:PORT` to a socket address (the first the resolver gives).
fn resolve(hostport: &str) -> Result<SocketAddr> {
    use std::net::ToSocketAddrs;
    hostport
        .to_socket_addrs()
        .context("expected HOST:PORT")?
        .next()
        .ok_or_else(|| anyhow::anyhow!("no address for {hostport}"))
}

/// Makes sure the built-in namespaces (on the founding node) and this node's Node object
/// exist.
async fn bootstrap(
    store: &Store,
    node: &str,
    address: Option<IpAddr>,
    api_port: u16,
    data_dir: &std::path::Path,
    pod_cidr: flotilla_netproxy::podnet::Cidr,
    founder: bool,
) -> Result<()> {
    let now = crate::store::now_rfc3339();
    let mut ops = Vec::new();
    for ns in ["default", "kube-system"] {
        if founder && store.get(&Key::new("Namespace", "", ns)).await?.is_none() {
            let obj = serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}, "status": {"phase": "Active"}});
            ops.push(Op::Create {
                object: obj,
                uid: new_uid(),
            });
        }
    }
    // The founder puts the CA and its join token in the store, so any member can admit.
    use crate::cluster::tokens;
    if founder && let Some(adm) = crate::cluster::join::Admission::load(data_dir, "")? {
        let ca_key = Key::new("Secret", tokens::NAMESPACE, tokens::CA_SECRET);
        if store.get(&ca_key).await?.is_none() {
            ops.push(Op::Put {
                object: tokens::ca_secret(&adm.ca_cert_pem, &adm.ca_key_pem),
                uid: new_uid(),
                create: true,
            });
        }
        for secret in &adm.secrets {
            let name = format!("bootstrap-token-{}", tokens::token_id(secret));
            if store
                .get(&Key::new("Secret", tokens::NAMESPACE, &name))
                .await?
                .is_none()
            {
                ops.push(Op::Put {
                    object: tokens::token_secret(secret, None, "made at --init", &now),
                    uid: new_uid(),
                    create: true,
                });
            }
        }
    }
    let addr = address
        .map(|a| a.to_string())
        .unwrap_or_else(|| "127.0.0.1".into());
    let node_obj = serde_json::to_value(with_api_port(
        node_object(node, &addr, HostResources::read_with_disk(data_dir), &now),
        api_port,
    ))?;
    let mut spec_only = node_obj.clone();
    spec_only
        .as_object_mut()
        .expect("node object is a map")
        .remove("status");
    spec_only["spec"]["podCIDR"] = serde_json::Value::from(pod_cidr.to_string());
    // Keep what users set on the node (labels, cordon) when resuming.
    if store.get(&Key::new("Node", "", node)).await?.is_none() {
        // Put-or-create: a joined node's copy of the store may still lag behind the cluster.
        ops.push(Op::Put {
            object: spec_only,
            uid: new_uid(),
            create: true,
        })
    }
    store
        .write(&Write {
            now: now.clone(),
            ops,
        })
        .await?;
    store
        .write(&Write {
            now,
            ops: vec![Op::Status { object: node_obj }],
        })
        .await?;
    Ok(())
}

/// This node's pod CIDR: `--pod-cidr`, else the one it had (DIR/pod-cidr), else the cluster's
/// first (the founder) or the lowest free one, claimed by writing this node's Node object
/// through the quorum. The store refuses a pod CIDR another Node holds, so two nodes joining
/// at once never share one; the loser picks again once its replica shows the winner.
async fn resolve_pod_cidr(
    a: &Config,
    store: &Store,
    node: &str,
    api_port: u16,
    founder: bool,
) -> Result<flotilla_netproxy::podnet::Cidr> {
    let file = a.data_dir.join("pod-cidr");
    let had = std::fs::read_to_string(&file)
        .ok()
        .and_then(|s| s.trim().parse().ok());
    let full = || {
        anyhow::anyhow!(
            "--cluster-cidr {}: every /{} is held by a node (give a bigger --cluster-cidr)",
            a.cluster_cidr,
            crate::node::overlay::NODE_PREFIX
        )
    };
    let cidr = match (a.pod_cidr, had) {
        // A node keeps its pod CIDR: the other nodes route it there, and its pods hold
        // addresses in it.
        (Some(c), Some(h)) if c != h => bail!(
            "--pod-cidr {c}: this node holds {h} (kept across restarts; `flotilla reset` the node to take another)"
        ),
        (Some(c), _) | (None, Some(c)) => c,
        (None, None) if founder => {
            crate::node::overlay::free_pod_cidr(a.cluster_cidr, &[]).ok_or_else(full)?
        }
        (None, None) => {
            let mut wait = Duration::from_millis(200);
            loop {
                // A joiner's replica starts empty: catch up first, so the pick is not one
                // the cluster already holds (refused, then retried after a wait).
                if let Err(e) = store.read_barrier().await {
                    debug!(node = %node, error = %e, "no consistent read before claiming a pod CIDR");
                }
                let (nodes, _) = store.list("Node", Some("")).await?;
                let mine = nodes
                    .iter()
                    .find(|n| n["metadata"]["name"] == node)
                    .and_then(|n| n["spec"]["podCIDR"].as_str()?.parse().ok());
                if let Some(c) = mine {
                    break c;
                }
                let taken = crate::node::overlay::pod_cidrs(&nodes, node);
                let pick =
                    crate::node::overlay::free_pod_cidr(a.cluster_cidr, &taken).ok_or_else(full)?;
                match bootstrap(
                    store,
                    node,
                    a.advertise_address,
                    api_port,
                    &a.data_dir,
                    pick,
                    false,
                )
                .await
                {
                    Ok(()) => break pick,
                    Err(e) => {
                        if matches!(e.downcast_ref(), Some(crate::store::StoreError::Taken(_))) {
                            debug!(node = %node, pod_cidr = %pick, "pod CIDR taken meanwhile; picking again");
                        } else {
                            warn!(node = %node, error = %format!("{e:#}"), "claiming a pod CIDR; retrying");
                        }
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(Duration::from_secs(5));
                    }
                }
            }
        }
    };
    std::fs::write(&file, format!("{cidr}\n")).context("writing DIR/pod-cidr")?;
    Ok(cidr)
}

pub(crate) fn parse_voters(s: &str) -> Result<usize, String> {
    match s {
        "1" | "3" | "5" => Ok(s.parse().expect("a digit")),
        _ => Err(format!("must be 1, 3 or 5 (an odd count), not {s:?}")),
    }
}
