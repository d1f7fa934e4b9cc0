//! Probes: liveness, readiness and startup, by exec, httpGet or tcpSocket, with Kubernetes'
//! timing fields and thresholds. Each probe of a running instance is one small tokio task;
//! results land in a shared table the reconciler reads ([`super::plan::Probed`]).
//!
//! TCP and HTTP probes connect from inside the pod's network namespace: sockets are made by a
//! small thread per probed instance that entered the namespace once ([`Dialer`]; a socket
//! belongs to the namespace it was made in), then used from async code. So a probe reaches the pod whatever the node's routing,
//! at the pod's IP when it has one, else at 127.0.0.1. An HTTPS probe speaks TLS as the
//! kubelet's does: any certificate is taken (the kubelet sets `InsecureSkipVerify`), the
//! handshake itself is checked.

use std::collections::HashMap;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::plan::Probed;
use crate::manifest::lifecycle::items;

/// Where a probe reaches its container.
#[derive(Debug, Clone)]
pub struct Target {
    /// The runtime id of the instance.
    pub id: String,
    pub netns: PathBuf,
    pub ip: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Startup,
    Liveness,
    Readiness,
}

/// The probe tasks of every running instance and their verdicts.
pub struct Prober {
    results: Arc<Mutex<HashMap<String, Probed>>>,
    tasks: HashMap<String, Vec<JoinHandle<()>>>,
    runtime: Arc<dyn super::host::PodRuntime>,
    wake: Arc<Notify>,
    changes: Arc<std::sync::atomic::AtomicU64>,
}

impl Prober {
    /// `changes` is bumped whenever a verdict changes.
    pub fn new(
        runtime: Arc<dyn super::host::PodRuntime>,
        wake: Arc<Notify>,
        changes: Arc<std::sync::atomic::AtomicU64>,
    ) -> Prober {
        Prober {
            results: Arc::default(),
            tasks: HashMap::new(),
            runtime,
            wake,
            changes,
        }
    }

    /// The verdicts for an instance (`None` before any probe of it has run).
    pub fn get(&self, id: &str) -> Option<Probed> {
        self.results.lock().expect("probe results").get(id).copied()
    }

    /// Makes sure the probes of a running instance run. `before` is what the pod's status said
    /// of it (ready, started), so that an agent restart does not flap a ready pod to unready.
    pub fn ensure(&mut self, c: &Container, target: Target, before: (bool, bool)) {
        if self.tasks.contains_key(&target.id) {
            return;
        }
        let has_probe =
            c.liveness_probe.is_some() || c.readiness_probe.is_some() || c.startup_probe.is_some();
        if !has_probe {
            return;
        }
        self.results.lock().expect("probe results").insert(
            target.id.clone(),
            Probed {
                ready: c.readiness_probe.is_none() || before.0,
                started: c.startup_probe.is_none() || before.1,
                failed: None,
            },
        );
        // With a pod IP the agent reaches the pod from its own namespace, as the kubelet does;
        // without one, from inside the pod's namespace.
        let dialer = if target.ip == "127.0.0.1" {
            match Dialer::new(&target.netns) {
                Ok(d) => Some(d),
                Err(e) => {
                    tracing::warn!(container = %target.id, error = %e, "cannot enter the pod's network namespace for probes");
                    return;
                }
            }
        } else {
            None
        };
        let mut handles = Vec::new();
        for (kind, p) in [
            (Kind::Startup, &c.startup_probe),
            (Kind::Liveness, &c.liveness_probe),
            (Kind::Readiness, &c.readiness_probe),
        ] {
            if let Some(p) = p {
                let task = ProbeTask {
                    dialer: dialer.clone(),
                    kind,
                    probe: p.clone(),
                    ports: items(&c.ports)
                        .iter()
                        .filter_map(|p| p.name.clone().map(|n| (n, p.container_port)))
                        .collect(),
                    target: target.clone(),
                    results: self.results.clone(),
                    runtime: self.runtime.clone(),
                    wake: self.wake.clone(),
                    changes: self.changes.clone(),
                };
                handles.push(tokio::spawn(task.run()));
            }
        }
        self.tasks.insert(target.id, handles);
    }

    /// Stops the probes of instances not in `running`.
    pub fn retain(&mut self, running: &std::collections::HashSet<String>) {
        self.tasks.retain(|id, hs| {
            let keep = running.contains(id);
            if !keep {
                for h in hs.iter() {
                    h.abort();
                }
            }
            keep
        });
        self.results
            .lock()
            .expect("probe results")
            .retain(|id, _| running.contains(id));
    }
}

struct ProbeTask {
    dialer: Option<Dialer>,
    kind: Kind,
    probe: Probe,
    ports: Vec<(String, i32)>,
    target: Target,
    results: Arc<Mutex<HashMap<String, Probed>>>,
    runtime: Arc<dyn super::host::PodRuntime>,
    wake: Arc<Notify>,
    changes: Arc<std::sync::atomic::AtomicU64>,
}

/// Probes wake on a shared 250 ms grid, so that the probes of many pods run in a few batches
/// per second rather than each on its own wake-up.
const GRID: Duration = Duration::from_millis(250);

fn on_grid(after: Duration) -> tokio::time::Instant {
    static BASE: std::sync::OnceLock<tokio::time::Instant> = std::sync::OnceLock::new();
    let base = *BASE.get_or_init(tokio::time::Instant::now);
    let target = tokio::time::Instant::now() + after;
    let since = target.saturating_duration_since(base).as_millis();
    let grid = GRID.as_millis();
    let rounded = since.div_ceil(grid) * grid;
    base + Duration::from_millis(rounded as u64)
}

fn secs(v: Option<i32>, default: i32, min: i32) -> Duration {
    Duration::from_secs(v.unwrap_or(default).max(min) as u64)
}

/// What a probe task does next, given its container's probe state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gate {
    Run,
    /// Liveness and readiness wait until the startup probe has passed.
    Wait,
    /// The container failed a probe (it is being restarted), or the startup probe is done.
    Stop,
}

fn gate(kind: Kind, s: &Probed) -> Gate {
    match kind {
        _ if s.failed.is_some() => Gate::Stop,
        Kind::Startup if s.started => Gate::Stop,
        Kind::Liveness | Kind::Readiness if !s.started => Gate::Wait,
        _ => Gate::Run,
    }
}

/// Kubernetes' thresholds over a run of probe outcomes: readiness turns true after
/// `successThreshold` successes in a row and false after `failureThreshold` failures in a row;
/// liveness fails the container after `failureThreshold` failures in a row; startup passes on
/// one success and fails the container after `failureThreshold` failures in a row.
#[derive(Debug, Clone, Copy)]
struct Counter {
    kind: Kind,
    success_threshold: i32,
    failure_threshold: i32,
    successes: i32,
    failures: i32,
}

impl Counter {
    fn new(kind: Kind, p: &Probe) -> Counter {
        Counter {
            kind,
            success_threshold: p.success_threshold.unwrap_or(1).max(1),
            failure_threshold: p.failure_threshold.unwrap_or(3).max(1),
            successes: 0,
            failures: 0,
        }
    }

    /// Counts one outcome and applies its verdict to `s`.
    fn record(&mut self, ok: bool, s: &mut Probed) {
        if ok {
            self.successes += 1;
            self.failures = 0;
        } else {
            self.failures += 1;
            self.successes = 0;
        }
        match self.kind {
            Kind::Readiness => {
                if self.successes >= self.success_threshold {
                    s.ready = true;
                } else if self.failures >= self.failure_threshold {
                    s.ready = false;
                }
            }
            Kind::Liveness => {
                if self.failures >= self.failure_threshold {
                    s.failed = Some("Liveness probe failed");
                }
            }
            Kind::Startup => {
                if self.successes >= 1 {
                    s.started = true;
                } else if self.failures >= self.failure_threshold {
                    s.failed = Some("Startup probe failed");
                }
            }
        }
    }
}

impl ProbeTask {
    async fn run(self) {
        let p = &self.probe;
        let period = secs(p.period_seconds, 10, 1);
        let timeout = secs(p.timeout_seconds, 1, 1);
        let mut counter = Counter::new(self.kind, p);
        tokio::time::sleep(secs(p.initial_delay_seconds, 0, 0)).await;
        let mut next = on_grid(Duration::ZERO);
        loop {
            let Some(state) = self.state() else { return };
            match gate(self.kind, &state) {
                Gate::Stop => return,
                Gate::Wait => {
                    tokio::time::sleep_until(on_grid(Duration::from_millis(1))).await;
                    continue;
                }
                Gate::Run => {}
            }
            let outcome = match tokio::time::timeout(timeout, self.check(timeout)).await {
                Ok(r) => r,
                Err(_) => Err(format!("timed out after {}s", timeout.as_secs())),
            };
            if let Err(why) = &outcome {
                tracing::debug!(container = %self.target.id, probe = ?self.kind, error = %why, "probe failed");
            }
            let changed = self.update(|s| counter.record(outcome.is_ok(), s));
            if changed {
                self.changes
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if let Err(why) = &outcome {
                    tracing::info!(container = %self.target.id, probe = ?self.kind, error = %why, "probe verdict changed");
                }
                self.wake.notify_one();
            }
            next += period;
            if next < tokio::time::Instant::now() {
                next = on_grid(Duration::ZERO);
            }
            tokio::time::sleep_until(next).await;
        }
    }

    fn state(&self) -> Option<Probed> {
        self.results
            .lock()
            .expect("probe results")
            .get(&self.target.id)
            .copied()
    }

    fn update(&self, f: impl FnOnce(&mut Probed)) -> bool {
        let mut r = self.results.lock().expect("probe results");
        let Some(s) = r.get_mut(&self.target.id) else {
            return false;
        };
        let before = *s;
        f(s);
        before != *s
    }

    fn port(&self, p: &IntOrString) -> Result<u16, String> {
        match p {
            IntOrString::Int(n) => u16::try_from(*n).map_err(|_| format!("bad port {n}")),
            IntOrString::String(name) => self
                .ports
                .iter()
                .find(|(n, _)| n == name)
                .and_then(|(_, p)| u16::try_from(*p).ok())
                .ok_or_else(|| format!("no container port named {name:?}")),
        }
    }

    async fn check(&self, timeout: Duration) -> Result<(), String> {
        let p = &self.probe;
        if let Some(e) = &p.exec {
            return self
                .runtime
                .exec_probe(&self.target.id, items(&e.command), timeout)
                .await;
        }
        let ip = |host: &Option<String>| {
            host.clone()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| self.target.ip.clone())
        };
        if let Some(t) = &p.tcp_socket {
            let addr = format!("{}:{}", ip(&t.host), self.port(&t.port)?);
            connect(self.dialer.as_ref(), &addr).await?;
            return Ok(());
        }
        if let Some(h) = &p.http_get {
            let tls = h
                .scheme
                .as_deref()
                .is_some_and(|s| s.eq_ignore_ascii_case("https"));
            let host = ip(&h.host);
            let port = self.port(&h.port)?;
            let path = h.path.clone().unwrap_or_else(|| "/".into());
            let headers: Vec<(String, String)> = items(&h.http_headers)
                .iter()
                .map(|h| (h.name.clone(), h.value.clone()))
                .collect();
            let code = http_get(self.dialer.as_ref(), &host, port, &path, &headers, tls).await?;
            return if (200..400).contains(&code) {
                Ok(())
            } else {
                Err(format!("HTTP probe failed with statuscode: {code}"))
            };
        }
        Err("the probe has no handler".into())
    }
}

/// Runs a command in the container; success is exit code 0.
pub async fn exec_probe(
    rt: &flotilla_runtime::container::Runtime,
    id: &str,
    command: &[String],
    timeout: Duration,
) -> Result<(), String> {
    let mut cmd =
        tokio::process::Command::from(rt.exec_command(id, command).map_err(|e| e.to_string())?);
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| e.to_string())?;
    let pid = child.id();
    let mut err = Vec::new();
    let mut stderr = child.stderr.take();
    let work = async {
        if let Some(s) = stderr.as_mut() {
            let _ = s.read_to_end(&mut err).await;
        }
        child.wait().await
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(Ok(st)) if st.success() => Ok(()),
        Ok(Ok(st)) => Err(format!(
            "command {command:?} exited with {}: {}",
            st.code().unwrap_or(-1),
            String::from_utf8_lossy(&err).trim()
        )),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => {
            if let Some(pid) = pid {
                // The helper kills and reaps the command on SIGTERM.
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
            Err(format!("command {command:?} timed out"))
        }
    }
}

/// A request for `count` sockets of one family.
type SocketRequest = (
    bool,
    usize,
    tokio::sync::oneshot::Sender<std::io::Result<Vec<OwnedFd>>>,
);

/// Sockets fetched from the namespace's thread at once: probes then connect without a
/// thread hand-off most of the time.
const SOCKET_BATCH: usize = 8;

/// Makes TCP sockets inside one network namespace: a small thread that entered the namespace
/// once and makes sockets on request (a socket belongs to the namespace it was made in), in
/// batches kept in a stash. The thread ends when the last handle is dropped.
#[derive(Clone)]
pub struct Dialer {
    tx: std::sync::mpsc::Sender<SocketRequest>,
    stash: Arc<Mutex<Vec<OwnedFd>>>,
}

impl Dialer {
    pub fn new(netns: &Path) -> std::io::Result<Dialer> {
        let f = std::fs::File::open(netns)?;
        let (tx, rx) = std::sync::mpsc::channel::<SocketRequest>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("netns-dialer".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                let entered = nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(std::io::Error::from);
                drop(f);
                let ok = entered.is_ok();
                let _ = ready_tx.send(entered);
                if !ok {
                    return;
                }
                while let Ok((v6, count, reply)) = rx.recv() {
                    let _ = reply.send((0..count).map(|_| raw_socket(v6)).collect());
                }
            })?;
        ready_rx
            .recv()
            .map_err(|_| std::io::Error::other("the dialer thread ended"))??;
        Ok(Dialer {
            tx,
            stash: Arc::default(),
        })
    }

    async fn socket(&self, v6: bool) -> Result<OwnedFd, String> {
        if !v6 && let Some(fd) = self.stash.lock().expect("socket stash").pop() {
            return Ok(fd);
        }
        let (reply, rx) = tokio::sync::oneshot::channel();
        let count = if v6 { 1 } else { SOCKET_BATCH };
        self.tx
            .send((v6, count, reply))
            .map_err(|_| "the namespace's dialer is gone".to_string())?;
        let mut fds = rx
            .await
            .map_err(|_| "the namespace's dialer is gone".to_string())?
            .map_err(|e| format!("socket: {e}"))?;
        let fd = fds.pop().ok_or("no socket made")?;
        self.stash.lock().expect("socket stash").extend(fds);
        Ok(fd)
    }

    /// Connects to `addr` from inside the namespace.
    pub async fn connect(&self, addr: &str) -> Result<tokio::net::TcpStream, String> {
        let addr: std::net::SocketAddr = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
        let fd = self.socket(addr.is_ipv6()).await?;
        let sock = tokio::net::TcpSocket::from_std_stream(std::net::TcpStream::from(fd));
        sock.connect(addr)
            .await
            .map_err(|e| dial_error(&addr.to_string(), &e))
    }
}

fn raw_socket(v6: bool) -> std::io::Result<OwnedFd> {
    // (made in the dialer thread, inside the pod's network namespace)
    let family = if v6 { libc::AF_INET6 } else { libc::AF_INET };
    // SAFETY: socket(2) with constant arguments; the fd is owned right away.
    let fd = unsafe {
        libc::socket(
            family,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh socket owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A failed connect in Go's words, as the kubelet reports it in probe results and
/// port-forward errors: `dial tcp 127.0.0.1:80: connect: connection refused`.
fn dial_error(addr: &str, e: &std::io::Error) -> String {
    let why = match e.raw_os_error() {
        Some(n) => {
            // strerror's text, lower-cased as Go's syscall errors read.
            let s = std::io::Error::from_raw_os_error(n).to_string();
            let s = s.split(" (os error").next().unwrap_or(&s).to_string();
            format!("connect: {}", s.to_lowercase())
        }
        None if e.kind() == std::io::ErrorKind::TimedOut => "i/o timeout".to_string(),
        None => e.to_string(),
    };
    format!("dial tcp {addr}: {why}")
}

/// Connects to `addr` through `dialer` (inside a pod's namespace), or from the agent's own.
pub async fn connect(dialer: Option<&Dialer>, addr: &str) -> Result<tokio::net::TcpStream, String> {
    match dialer {
        Some(d) => d.connect(addr).await,
        None => tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| dial_error(addr, &e)),
    }
}

/// A minimal HTTP/1.1 GET, over TLS when `tls`; returns the status code.
pub async fn http_get(
    dialer: Option<&Dialer>,
    host: &str,
    port: u16,
    path: &str,
    headers: &[(String, String)],
    tls: bool,
) -> Result<u16, String> {
    let s = connect(dialer, &format!("{host}:{port}")).await?;
    if !tls {
        return request(s, host, port, path, headers).await;
    }
    let name = rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| format!("{host:?} is not a host name or address: {e}"))?;
    let s = tokio_rustls::TlsConnector::from(PROBE_TLS.clone())
        .connect(name, s)
        .await
        .map_err(|e| format!("TLS handshake with {host}:{port} failed: {e}"))?;
    request(s, host, port, path, headers).await
}

async fn request<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut s: S,
    host: &str,
    port: u16,
    path: &str,
    headers: &[(String, String)],
) -> Result<u16, String> {
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: flotilla-probe/1\r\nAccept: */*\r\nConnection: close\r\n"
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 256];
    let mut got = 0;
    while got < buf.len() {
        let n = s.read(&mut buf[got..]).await.map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        got += n;
        if buf[..got].windows(2).any(|w| w == b"\r\n") {
            break;
        }
    }
    parse_status_line(&buf[..got])
}

/// The TLS client of HTTPS probes: TLS 1.2 and 1.3 with ring, any server certificate.
static PROBE_TLS: std::sync::LazyLock<Arc<rustls::ClientConfig>> = std::sync::LazyLock::new(|| {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    Arc::new(config)
});

/// Takes any certificate, as the kubelet's probes do (`InsecureSkipVerify`); the handshake's
/// signatures are still verified, so the server holds the key of the certificate it shows.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn parse_status_line(b: &[u8]) -> Result<u16, String> {
    let line = String::from_utf8_lossy(b);
    let first = line.lines().next().unwrap_or("");
    let mut parts = first.split_whitespace();
    match (parts.next(), parts.next()) {
        (Some(v), Some(code)) if v.starts_with("HTTP/") => code
            .parse()
            .map_err(|_| format!("bad HTTP status line {first:?}")),
        _ => Err(format!("not an HTTP response: {first:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(success: i32, failure: i32) -> Probe {
        serde_json::from_value(serde_json::json!({
            "exec": {"command": ["true"]},
            "successThreshold": success,
            "failureThreshold": failure,
        }))
        .unwrap()
    }

    /// Feeds outcomes to a counter; returns the state after each.
    fn run(kind: Kind, p: &Probe, start: Probed, outcomes: &[bool]) -> Vec<Probed> {
        let mut c = Counter::new(kind, p);
        let mut s = start;
        outcomes
            .iter()
            .map(|ok| {
                c.record(*ok, &mut s);
                s
            })
            .collect()
    }

    const FRESH: Probed = Probed {
        ready: false,
        started: true,
        failed: None,
    };

    #[test]
    fn readiness_needs_success_threshold_in_a_row_and_failure_threshold_to_drop() {
        let ready: Vec<bool> = run(
            Kind::Readiness,
            &probe(3, 2),
            FRESH,
            &[
                true, true, false, true, true, true, false, true, false, false,
            ],
        )
        .iter()
        .map(|s| s.ready)
        .collect();
        assert_eq!(
            ready,
            [
                false, false, false, false, false, true, true, true, true, false
            ]
        );
    }

    #[test]
    fn liveness_fails_only_after_failure_threshold_failures_in_a_row() {
        let failed = |outcomes: &[bool]| {
            run(Kind::Liveness, &probe(1, 3), FRESH, outcomes)
                .last()
                .unwrap()
                .failed
        };
        assert_eq!(failed(&[false, false, true, false, false]), None);
        assert_eq!(
            failed(&[false, false, true, false, false, false]),
            Some("Liveness probe failed")
        );
    }

    #[test]
    fn startup_passes_on_one_success_and_holds_the_other_probes_until_then() {
        let starting = Probed {
            started: false,
            ..FRESH
        };
        assert_eq!(gate(Kind::Liveness, &starting), Gate::Wait);
        assert_eq!(gate(Kind::Readiness, &starting), Gate::Wait);
        assert_eq!(gate(Kind::Startup, &starting), Gate::Run);
        let states = run(Kind::Startup, &probe(1, 3), starting, &[false, false, true]);
        assert!(states[2].started && states[2].failed.is_none());
        assert_eq!(gate(Kind::Startup, &states[2]), Gate::Stop);
        assert_eq!(gate(Kind::Liveness, &states[2]), Gate::Run);
        let failed = run(
            Kind::Startup,
            &probe(1, 3),
            starting,
            &[false, false, false],
        );
        assert_eq!(failed[2].failed, Some("Startup probe failed"));
        assert_eq!(gate(Kind::Liveness, &failed[2]), Gate::Stop);
    }

    #[test]
    fn status_lines_parse() {
        assert_eq!(parse_status_line(b"HTTP/1.0 200 OK\r\n"), Ok(200));
        assert_eq!(
            parse_status_line(b"HTTP/1.1 404 Not Found\r\nX: y"),
            Ok(404)
        );
        assert!(parse_status_line(b"SSH-2.0-OpenSSH").is_err());
    }

    #[tokio::test]
    async fn connects_from_inside_a_network_namespace() {
        // This process's own namespace stands in for a pod's: a listener on 127.0.0.1.
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut b = [0u8; 512];
            let _ = s.read(&mut b).await;
            s.write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
                .await
                .unwrap();
        });
        let me = Dialer::new(Path::new("/proc/self/ns/net")).unwrap();
        let code = http_get(Some(&me), "127.0.0.1", addr.port(), "/healthz", &[], false)
            .await
            .unwrap();
        assert_eq!(code, 204);
        server.await.unwrap();
        let closed = me.connect("127.0.0.1:1").await;
        let plain = http_get(Some(&me), "127.0.0.1", 1, "/", &[], true).await;
        assert!(plain.unwrap_err().contains("connection refused"));
        assert_eq!(
            closed.unwrap_err(),
            "dial tcp 127.0.0.1:1: connect: connection refused"
        );
    }

    /// An HTTPS probe against a real TLS server on loopback with a self-signed certificate
    /// (as the kubelet, the certificate is not checked): the status decides, and a server
    /// that does not speak TLS fails the handshake.
    #[tokio::test]
    async fn https_probes_take_any_certificate_and_read_the_status() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["pod.local".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let server_config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config));
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            for answer in [
                "HTTP/1.1 200 OK\r\n\r\n",
                "HTTP/1.1 503 Unavailable\r\n\r\n",
            ] {
                let (s, _) = l.accept().await.unwrap();
                let mut s = acceptor.accept(s).await.unwrap();
                let mut b = [0u8; 512];
                let n = s.read(&mut b).await.unwrap();
                assert!(b[..n].starts_with(b"GET /healthz HTTP/1.1\r\n"));
                s.write_all(answer.as_bytes()).await.unwrap();
                s.shutdown().await.unwrap();
            }
        });
        let get = || http_get(None, "127.0.0.1", port, "/healthz", &[], true);
        assert_eq!(get().await, Ok(200));
        assert_eq!(get().await, Ok(503));
        server.await.unwrap();
        // Plain HTTP where TLS is asked: the handshake fails, and says so.
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
        });
        let e = http_get(None, "127.0.0.1", port, "/", &[], true)
            .await
            .unwrap_err();
        assert!(e.contains("TLS handshake"), "{e}");
    }
}
