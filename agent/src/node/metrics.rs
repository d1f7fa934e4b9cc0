//! Resource metrics of this node and its containers, as metrics-server serves them
//! (`metrics.k8s.io/v1beta1`, what `kubectl top` reads).
//!
//! A sampler reads, every resolution (`--metrics-resolution`, 15 s as metrics-server's),
//! the node's CPU time (`/proc/stat`) and working-set memory (`/proc/meminfo`: used less the
//! inactive page cache, the kubelet's definition) and each running container's cgroup
//! (`cpuacct`/`cpu.stat` and the working set, `flotilla_runtime::cgroups::usage`). CPU is the
//! rate between the last two readings, in nanocores; memory the last reading. Readings stay
//! in memory: a sample is not state, and writing one would cost the disk a write per pod per
//! period. Other nodes fetch them from this node's API (`api/metrics.rs`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::pods::containers::{cgroup_path, parse_instance_id};

/// One reading of the node and its containers.
#[derive(Debug, Clone)]
pub struct Reading {
    pub at: Instant,
    /// The wall clock of the reading (RFC 3339), as the metrics' `timestamp`.
    pub wall: String,
    /// The node's CPU time, busy (not idle or waiting), in nanoseconds (`None`: unreadable,
    /// and no window ends or starts at this reading).
    pub node_cpu_ns: Option<u64>,
    pub node_working_set: u64,
    /// By runtime instance id (`uid_container_attempt`): CPU ns and working set bytes.
    pub containers: HashMap<String, (u64, u64)>,
}

/// Usage over one window, as metrics-server reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// CPU in nanocores (`123456n`).
    pub cpu: String,
    /// Working set in KiB (`2048Ki`).
    pub memory: String,
}

fn usage(nanocores: u64, bytes: u64) -> Usage {
    Usage {
        cpu: format!("{nanocores}n"),
        memory: format!("{}Ki", bytes / 1024),
    }
}

/// A container's usage in a pod's sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerUsage {
    pub name: String,
    pub usage: Usage,
}

/// What this node measured, for the API to name and filter.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub node: String,
    pub timestamp: String,
    /// The window's length, as Go prints a duration (`15.002s`).
    pub window: String,
    /// `None` until two readings are in.
    pub usage: Option<Usage>,
    /// Each pod's containers, by pod uid.
    pub pods: Vec<(String, Vec<ContainerUsage>)>,
}

/// The rate between two readings, or `None` when they are not two (the first period after
/// start) or not in order. A container whose CPU went back (a new instance) is left out, as
/// metrics-server leaves it out, until the next window.
pub fn between(node: &str, prev: &Reading, cur: &Reading) -> Option<Sample> {
    let dt = cur.at.checked_duration_since(prev.at)?;
    if dt.is_zero() {
        return None;
    }
    let rate = |a: u64, b: u64| -> Option<u64> {
        let d = b.checked_sub(a)? as u128;
        Some((d * 1_000_000_000 / dt.as_nanos()) as u64)
    };
    let mut by_pod: HashMap<&str, Vec<ContainerUsage>> = HashMap::new();
    for (id, (cpu, ws)) in &cur.containers {
        let Some((before, _)) = prev.containers.get(id) else {
            continue;
        };
        let (Some((uid, container, _)), Some(nc)) = (parse_instance_id(id), rate(*before, *cpu))
        else {
            continue;
        };
        by_pod.entry(uid).or_default().push(ContainerUsage {
            name: container.to_string(),
            usage: usage(nc, *ws),
        });
    }
    let mut pods: Vec<(String, Vec<ContainerUsage>)> = by_pod
        .into_iter()
        .map(|(uid, mut cs)| {
            cs.sort_by(|a, b| a.name.cmp(&b.name));
            (uid.to_string(), cs)
        })
        .collect();
    pods.sort_by(|a, b| a.0.cmp(&b.0));
    Some(Sample {
        node: node.to_string(),
        timestamp: cur.wall.clone(),
        window: go_duration(dt),
        usage: prev
            .node_cpu_ns
            .zip(cur.node_cpu_ns)
            .and_then(|(a, b)| rate(a, b))
            .map(|nc| usage(nc, cur.node_working_set)),
        pods,
    })
}

/// The busy CPU time in `/proc/stat`'s first line (user, nice, system, irq, softirq, steal),
/// in nanoseconds; `ticks` is the kernel's clock rate (`USER_HZ`).
pub fn busy_cpu_ns(stat: &str, ticks: u64) -> Option<u64> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    let at = |i: usize| f.get(i).copied().unwrap_or(0);
    // user nice system idle iowait irq softirq steal
    let busy = u128::from(at(0) + at(1) + at(2) + at(5) + at(6) + at(7));
    let ns = busy * 1_000_000_000 / u128::from(ticks.max(1));
    Some(u64::try_from(ns).unwrap_or(u64::MAX))
}

/// A duration as Go prints one (`15s`, `10.032s`, `1m15s`), to the millisecond: the
/// metrics' `window` as metrics-server writes it.
pub fn go_duration(d: Duration) -> String {
    let ms = d.as_millis();
    let (h, m, s, frac) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    let secs = if frac == 0 {
        format!("{s}s")
    } else {
        format!("{s}.{}s", format!("{frac:03}").trim_end_matches('0'))
    };
    match (h, m) {
        (0, 0) => secs,
        (0, m) => format!("{m}m{secs}"),
        (h, m) => format!("{h}h{m}m{secs}"),
    }
}

/// A duration as Go writes one (`15s`, `1m15.5s`, `300ms`), the inverse of [`go_duration`].
pub fn parse_go_duration(s: &str) -> Option<std::time::Duration> {
    let mut total = 0f64;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let value: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..u] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[u..];
        total += value * scale;
    }
    Some(std::time::Duration::from_secs_f64(total))
}

/// The node's working set from `/proc/meminfo`: memory in use (total less free) less the
/// inactive file cache, as the kubelet reckons its root cgroup's.
pub fn node_working_set(meminfo: &str) -> u64 {
    let f = |k: &str| super::status::meminfo_field(meminfo, k).unwrap_or(0);
    f("MemTotal:")
        .saturating_sub(f("MemFree:"))
        .saturating_sub(f("Inactive(file):"))
}

/// The last two readings and what they give.
pub struct Metrics {
    pub node: String,
    pub resolution: Duration,
    last: Mutex<(Option<Reading>, Option<Reading>)>,
}

impl Metrics {
    pub fn new(node: &str, resolution: Duration) -> Arc<Metrics> {
        Arc::new(Metrics {
            node: node.to_string(),
            resolution,
            last: Mutex::new((None, None)),
        })
    }

    /// Whether sampling is on (a zero resolution turns it off).
    pub fn enabled(&self) -> bool {
        !self.resolution.is_zero()
    }

    pub fn record(&self, r: Reading) {
        let mut last = self.last.lock().expect("metrics lock");
        last.0 = last.1.take();
        last.1 = Some(r);
    }

    /// The last window's sample (`None` before two readings, and once the last reading is
    /// older than two periods: a stalled sampler's figures are not served as current).
    pub fn sample(&self) -> Option<Sample> {
        let last = self.last.lock().expect("metrics lock");
        match &*last {
            (Some(p), Some(c))
                if c.at.elapsed() <= self.resolution * 2 + Duration::from_secs(1) =>
            {
                between(&self.node, p, c)
            }
            _ => None,
        }
    }
}

/// Reads the node and the containers `ids` (runtime instance ids) now.
pub fn read(ids: &[String]) -> Reading {
    let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .map(|t| t as u64)
        .unwrap_or(100);
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mut containers = HashMap::new();
    for id in ids {
        let Some((uid, _, _)) = parse_instance_id(id) else {
            continue;
        };
        let u = flotilla_runtime::cgroups::usage(&cgroup_path(uid, id));
        // A stopped instance's cgroup holds no process: it uses nothing now. A running one
        // has used some CPU; none read is a counter that could not be read.
        if u.pids > 0 && u.cpu_ns > 0 {
            containers.insert(id.clone(), (u.cpu_ns, u.working_set_bytes));
        }
    }
    Reading {
        at: Instant::now(),
        wall: crate::store::now_rfc3339(),
        node_cpu_ns: busy_cpu_ns(&stat, ticks),
        node_working_set: node_working_set(&meminfo),
        containers,
    }
}

/// Samples every resolution until `stop`.
pub async fn sample(
    metrics: Arc<Metrics>,
    runtime: Arc<flotilla_runtime::container::Runtime>,
    stop: CancellationToken,
) {
    if !metrics.enabled() {
        return;
    }
    let mut tick = tokio::time::interval(metrics.resolution);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let rt = runtime.clone();
        let reading =
            tokio::task::spawn_blocking(move || read(&rt.list().unwrap_or_default())).await;
        match reading {
            Ok(r) => metrics.record(r),
            Err(e) => tracing::warn!(error = %e, "reading the metrics failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        use std::time::Duration;
        assert_eq!(parse_go_duration("32s"), Some(Duration::from_secs(32)));
        assert_eq!(parse_go_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_go_duration("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_go_duration("soon"), None);
        assert_eq!(parse_go_duration(""), None);
        for ms in [15_250, 75_500, 3_600_000] {
            let d = Duration::from_millis(ms);
            assert_eq!(
                parse_go_duration(&go_duration(d)),
                Some(d),
                "{}",
                go_duration(d)
            );
        }
    }

    fn reading(at: Instant, cpu: u64, containers: &[(&str, u64, u64)]) -> Reading {
        Reading {
            at,
            wall: "2026-12-04T00:00:00Z".into(),
            node_cpu_ns: Some(cpu),
            node_working_set: 3 << 30,
            containers: containers
                .iter()
                .map(|(id, c, m)| (id.to_string(), (*c, *m)))
                .collect(),
        }
    }

    #[test]
    fn cpu_is_the_rate_over_the_window_and_memory_the_last_working_set() {
        let t = Instant::now();
        let prev = reading(
            t,
            10_000_000_000,
            &[
                ("u1_web_0", 1_000_000_000, 1 << 20),
                ("u1_side_0", 0, 0),
                ("u2_old_0", 5, 5),
            ],
        );
        let cur = reading(
            t + Duration::from_secs(10),
            15_000_000_000,
            &[
                ("u1_web_0", 3_000_000_000, 2 << 20),
                ("u1_side_0", 0, 4096),
                ("u2_old_1", 1, 1),
                ("u3_new_0", 9, 9),
            ],
        );
        let s = between("n1", &prev, &cur).unwrap();
        assert_eq!(s.window, "10s");
        // 5 s of CPU in 10 s: half a core; 2 s in 10 s: 0.2 of a core.
        assert_eq!(s.usage.unwrap(), usage(500_000_000, 3 << 30));
        assert_eq!(
            s.pods,
            [(
                "u1".to_string(),
                vec![
                    ContainerUsage {
                        name: "side".into(),
                        usage: usage(0, 4096)
                    },
                    ContainerUsage {
                        name: "web".into(),
                        usage: usage(200_000_000, 2 << 20)
                    },
                ]
            )],
            "a new instance (restart, new pod) has no window yet"
        );
        assert_eq!(s.pods[0].1[1].usage.memory, "2048Ki");
        assert!(
            between("n1", &cur, &prev).is_none(),
            "readings out of order"
        );
        // A counter that went back (the container was replaced under the same id) is left out.
        let reset = reading(
            t + Duration::from_secs(20),
            16_000_000_000,
            &[("u1_web_0", 1, 1)],
        );
        assert!(between("n1", &cur, &reset).unwrap().pods.is_empty());
    }

    #[test]
    fn node_cpu_and_memory_from_proc() {
        let stat = "cpu  100 20 30 1000 50 5 5 10 0 0\ncpu0 1 2 3 4\n";
        // user+nice+system+irq+softirq+steal = 170 ticks at 100/s = 1.7 s.
        assert_eq!(busy_cpu_ns(stat, 100), Some(1_700_000_000));
        let meminfo =
            "MemTotal: 1000 kB\nMemFree: 300 kB\nMemAvailable: 600 kB\nInactive(file): 200 kB\n";
        assert_eq!(node_working_set(meminfo), 500 * 1024);
        assert_eq!(busy_cpu_ns("", 100), None);
        assert_eq!(go_duration(Duration::from_millis(10_032)), "10.032s");
        assert_eq!(go_duration(Duration::from_millis(15_500)), "15.5s");
        assert_eq!(go_duration(Duration::from_secs(75)), "1m15s");
        assert_eq!(go_duration(Duration::from_secs(3600)), "1h0m0s");
    }

    #[test]
    fn a_sample_needs_two_readings() {
        let m = Metrics::new("n1", Duration::from_secs(15));
        assert!(m.sample().is_none());
        let t = Instant::now();
        m.record(reading(t, 0, &[]));
        assert!(m.sample().is_none());
        m.record(reading(t + Duration::from_secs(1), 1_000_000_000, &[]));
        assert_eq!(m.sample().unwrap().usage.unwrap().cpu, "1000000000n");
        assert!(!Metrics::new("n1", Duration::ZERO).enabled());
        // A reading whose CPU could not be read ends no window: no spike of all the time
        // since boot divided by one period.
        let mut unread = reading(t + Duration::from_secs(2), 0, &[]);
        unread.node_cpu_ns = None;
        m.record(unread);
        assert!(m.sample().unwrap().usage.is_none());
    }
}
