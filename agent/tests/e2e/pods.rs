//! Pods as real containers under a real agent: they run, serve, restart, probe, take their
//! configuration, end, get OOM-killed, and survive a `kill -9` of the agent untouched.

use serde_json::Value;

use crate::harness::{Agent, apply_web, manifest, name, pods_with, ready};

#[test]
fn a_deployment_serves_its_page_follows_its_configmap_and_survives_kill_9() {
    let mut a = Agent::with_image();
    let pods = apply_web(&a);
    let first = name(&pods[0]);
    let page = a.ok(&[
        "exec",
        &first,
        "--",
        "wget",
        "-qO-",
        "http://127.0.0.1:8080/",
    ]);
    assert_eq!(page, "<h1>Hello from Flotilla</h1>\n");
    // exec passes the command's exit code back.
    let out = a.cli(&[
        "exec",
        &first,
        "--",
        "sh",
        "-c",
        "echo to-stderr >&2; exit 7",
    ]);
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "to-stderr\n");
    // The probe's requests are in the logs.
    let logs = a.ok(&["logs", &first, "--tail", "1"]);
    assert!(logs.contains("response:200"), "{logs:?}");

    // A configMap volume follows the ConfigMap.
    let cm = manifest(
        &a,
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web-content}\ndata: {index.html: \"version two\"}\n",
    );
    a.ok(&["apply", "-f", &cm]);
    a.eventually(20, "the new page", || {
        a.cli(&["exec", &first, "--", "cat", "/www/index.html"])
            .stdout
            == b"version two"
    });

    // kill -9 the agent and start it again: nothing restarts, status stays true.
    let started = |a: &Agent| -> Vec<(String, Value, Value)> {
        pods_with(a, "app=web")
            .iter()
            .map(|p| {
                let c = &p["status"]["containerStatuses"][0];
                (
                    name(p),
                    c["state"]["running"]["startedAt"].clone(),
                    c["containerID"].clone(),
                )
            })
            .collect()
    };
    let before = started(&a);
    a.kill9();
    a.spawn(false);
    std::thread::sleep(std::time::Duration::from_secs(3));
    let after = started(&a);
    assert_eq!(before, after, "same containers, same start times");
    let pods = pods_with(&a, "app=web");
    assert!(
        pods.iter()
            .all(|p| ready(p) && p["status"]["containerStatuses"][0]["restartCount"] == 0)
    );
    assert_eq!(
        a.ok(&[
            "exec",
            &first,
            "--",
            "wget",
            "-qO-",
            "http://127.0.0.1:8080/"
        ]),
        "version two"
    );

    // Deleting the Deployment stops and removes its containers and sandboxes.
    a.ok(&["delete", "deployment", "web"]);
    let runtime = a.data_dir().join("runtime");
    a.eventually(60, "containers and sandboxes removed", || {
        let n = |d: &str| {
            std::fs::read_dir(runtime.join(d))
                .map(|r| r.count())
                .unwrap_or(0)
        };
        n("containers") == 0 && n("sandboxes") == 0
    });
}

#[test]
fn crashes_back_off_liveness_restarts_readiness_gates_and_emptydir_stays() {
    let a = Agent::with_image();
    let m = manifest(
        &a,
        "pods.yaml",
        r#"apiVersion: v1
kind: Pod
metadata: {name: crash}
spec:
  containers:
  - name: app
    image: flotilla.local/busybox:1
    command: ["sh", "-c", "echo crashing; exit 1"]
---
apiVersion: v1
kind: Pod
metadata: {name: live}
spec:
  terminationGracePeriodSeconds: 1
  volumes:
  - name: scratch
    emptyDir: {}
  containers:
  - name: app
    image: flotilla.local/busybox:1
    command: ["sh", "-c", "echo start >> /data/starts; touch /tmp/healthy; sleep 2; rm /tmp/healthy; exec sleep 600"]
    volumeMounts:
    - {name: scratch, mountPath: /data}
    livenessProbe:
      exec: {command: ["cat", "/tmp/healthy"]}
      periodSeconds: 1
      failureThreshold: 1
---
apiVersion: v1
kind: Pod
metadata: {name: unready}
spec:
  containers:
  - name: app
    image: flotilla.local/busybox:1
    command: ["sleep", "600"]
    readinessProbe:
      tcpSocket: {port: 9999}
      periodSeconds: 1
"#,
    );
    a.ok(&["apply", "-f", &m]);

    // Crash loop: restart at once, then wait 10 s, then 20 s.
    let mut messages = Vec::new();
    a.eventually(40, "a 20s back-off after two restarts", || {
        let c = a.container_status("crash");
        if let Some(m) = c["state"]["waiting"]["message"].as_str()
            && !messages.contains(&m.to_string())
        {
            messages.push(m.to_string());
        }
        c["state"]["waiting"]["reason"] == "CrashLoopBackOff"
            && c["restartCount"] == 2
            && c["state"]["waiting"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("back-off 20s"))
    });
    assert!(
        messages.iter().any(|m| m.starts_with("back-off 10s")),
        "the delay grew from 10s: {messages:?}"
    );
    let c = a.container_status("crash");
    assert_eq!(c["lastState"]["terminated"]["exitCode"], 1);
    assert_eq!(c["lastState"]["terminated"]["reason"], "Error");
    assert_eq!(a.ok(&["logs", "crash", "--previous"]), "crashing\n");
    let table = a.ok(&["get", "pod", "crash"]);
    assert!(table.contains("CrashLoopBackOff"), "{table}");

    // The liveness probe fails after 2 s: the container restarts, its emptyDir stays.
    a.eventually(30, "a liveness restart", || {
        a.container_status("live")["restartCount"]
            .as_u64()
            .is_some_and(|n| n >= 1)
    });
    a.eventually(20, "the restarted container running", || {
        !a.container_status("live")["state"]["running"].is_null()
    });
    let starts = a.ok(&["exec", "live", "--", "cat", "/data/starts"]);
    assert!(starts.starts_with("start\nstart\n"), "{starts:?}");
    let events = a.ok(&["describe", "pod", "live"]);
    assert!(events.contains("Liveness probe failed"), "{events}");

    // Nothing listens on 9999: running, never ready.
    let p = a.pod("unready").unwrap();
    assert_eq!(p["status"]["phase"], "Running");
    assert!(!ready(&p));
    assert_eq!(p["status"]["containerStatuses"][0]["ready"], false);
}

/// Seconds since the epoch of an RFC 3339 UTC time (`2026-11-23T23:40:01Z`).
fn epoch_secs(t: &serde_json::Value) -> i64 {
    let t = t.as_str().unwrap_or_else(|| panic!("not a time: {t}"));
    let n = |r: std::ops::Range<usize>| t[r].parse::<i64>().unwrap();
    let (y, m, d) = (n(0..4), n(5..7), n(8..10));
    // Days from civil (Howard Hinnant).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    days * 86400 + n(11..13) * 3600 + n(14..16) * 60 + n(17..19)
}

#[test]
fn startup_probes_hold_liveness_back_slow_probes_time_out_and_initial_delays_wait() {
    let a = Agent::with_image();
    let pod = |name: &str, command: &str, probes: &str| {
        format!(
            r#"apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: flotilla.local/busybox:1
    command: ["sh", "-c", "{command}"]
{probes}"#
        )
    };
    let yaml = [
        // Up after 4 s; a liveness probe that fails once kills it unless it waits for startup.
        pod(
            "slowstart",
            "sleep 4; touch /tmp/up; exec sleep 600",
            "    startupProbe: {exec: {command: [test, -f, /tmp/up]}, periodSeconds: 1, failureThreshold: 20}
    livenessProbe: {exec: {command: [test, -f, /tmp/up]}, periodSeconds: 1, failureThreshold: 1}
",
        ),
        pod(
            "neverup",
            "exec sleep 600",
            "    startupProbe: {exec: {command: [test, -f, /tmp/up]}, periodSeconds: 1, failureThreshold: 2}
",
        ),
        // A probe that takes 3 s against a 1 s timeout always fails.
        pod(
            "slowprobe",
            "exec sleep 600",
            "    readinessProbe: {exec: {command: [sleep, '3']}, periodSeconds: 1, timeoutSeconds: 1}
",
        ),
        pod(
            "delayed",
            "exec sleep 600",
            "    readinessProbe: {exec: {command: ['true']}, periodSeconds: 1, initialDelaySeconds: 6}
",
        ),
    ]
    .join("---\n");
    a.ok(&["apply", "-f", &manifest(&a, "probes.yaml", &yaml)]);

    a.eventually(60, "slowstart Ready", || {
        a.pod("slowstart").is_some_and(|p| ready(&p))
    });
    let c = a.container_status("slowstart");
    assert_eq!(
        (c["restartCount"].as_i64(), c["started"].as_bool()),
        (Some(0), Some(true)),
        "{c}\n{}",
        a.log()
    );

    a.eventually(60, "neverup restarted by its startup probe", || {
        a.container_status("neverup")["restartCount"]
            .as_i64()
            .is_some_and(|n| n >= 1)
    });
    let events = a.ok(&["describe", "pod", "neverup"]);
    assert!(events.contains("Startup probe failed"), "{events}");

    a.eventually(60, "delayed Ready", || {
        a.pod("delayed").is_some_and(|p| ready(&p))
    });
    let p = a.pod("delayed").unwrap();
    let started = epoch_secs(&p["status"]["containerStatuses"][0]["state"]["running"]["startedAt"]);
    let ready_at = p["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .map(|c| epoch_secs(&c["lastTransitionTime"]))
        .unwrap();
    // Whole seconds on both sides: at least the delay less one for rounding.
    assert!(
        ready_at - started >= 5,
        "Ready {}s after the start, before initialDelaySeconds 6",
        ready_at - started
    );

    // By now slowprobe has been probed for several seconds: never once Ready.
    let p = a.pod("slowprobe").unwrap();
    assert_eq!(p["status"]["phase"], "Running");
    assert!(!ready(&p), "{p}");
    assert_eq!(
        p["status"]["containerStatuses"][0]["restartCount"], 0,
        "{}",
        p["status"]
    );
}

#[test]
fn deleting_a_pod_runs_its_prestop_hook_then_sigterm_then_sigkill_after_the_grace() {
    let a = Agent::with_image();
    let host = a.data_dir().join("host");
    std::fs::create_dir_all(&host).unwrap();
    let pod_with = |name: &str, grace: u32, script: &str, hook: &str| {
        format!(
            r#"apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  terminationGracePeriodSeconds: {grace}
  volumes: [{{name: h, hostPath: {{path: {}}}}}]
  containers:
  - name: app
    image: flotilla.local/busybox:1
    command: ["sh", "-c", "{script}"]
    volumeMounts: [{{name: h, mountPath: /h}}]
    lifecycle:
      preStop: {hook}
"#,
            host.display()
        )
    };
    let pod = |name: &str, grace: u32, script: &str| {
        let hook = format!("{{exec: {{command: [sh, -c, \"echo prestop >> /h/{name}\"]}}}}");
        pod_with(name, grace, script, &hook)
    };
    let yaml = [
        // sh as PID 1 gets SIGTERM only through a trap.
        pod(
            "polite",
            30,
            "trap 'echo term >> /h/polite; exit 0' TERM; echo up >> /h/polite; while true; do sleep 0.2; done",
        ),
        pod(
            "stubborn",
            2,
            "trap '' TERM; echo up >> /h/stubborn; while true; do sleep 0.2; done",
        ),
        // A pause before SIGTERM, as images without a shell are given one.
        pod_with(
            "pauser",
            30,
            "trap 'echo term >> /h/pauser; exit 0' TERM; echo up >> /h/pauser; while true; do sleep 0.2; done",
            "{sleep: {seconds: 2}}",
        ),
    ]
    .join("---\n");
    a.ok(&["apply", "-f", &manifest(&a, "stop.yaml", &yaml)]);
    let file = |n: &str| std::fs::read_to_string(host.join(n)).unwrap_or_default();
    a.eventually(60, "both pods up", || {
        file("polite") == "up\n" && file("stubborn") == "up\n" && file("pauser") == "up\n"
    });
    let running = || {
        let rt = flotilla_runtime::container::Runtime::open(
            &flotilla::node::pods::Node::runtime_root(a.data_dir()),
        )
        .unwrap();
        rt.list()
            .unwrap_or_default()
            .into_iter()
            .filter(|id| {
                matches!(
                    rt.status(id),
                    Ok(flotilla_runtime::container::ContainerStatus::Running { .. })
                )
            })
            .count()
    };
    assert_eq!(running(), 3);
    let t = std::time::Instant::now();
    a.ok(&["delete", "pod", "polite", "stubborn", "pauser"]);
    a.eventually(
        30,
        "polite stopped by its TERM trap, after its preStop hook",
        || file("polite") == "up\nprestop\nterm\n",
    );
    a.eventually(
        30,
        "pauser stopped by its TERM trap after its pause",
        || file("pauser") == "up\nterm\n",
    );
    assert!(
        t.elapsed() >= std::time::Duration::from_secs(2),
        "SIGTERM came {:?} after the delete, within the 2 s pause",
        t.elapsed()
    );
    a.eventually(30, "the containers gone", || running() == 0);
    // The stubborn one ignores SIGTERM: SIGKILL ends it once its 2 s grace is over.
    assert!(
        t.elapsed() >= std::time::Duration::from_secs(2),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(file("stubborn"), "up\nprestop\n");
}

#[test]
fn jobs_succeed_secrets_reach_env_and_memory_hogs_are_oomkilled() {
    let a = Agent::with_image();
    let m = manifest(
        &a,
        "job.yaml",
        r#"apiVersion: v1
kind: Secret
metadata: {name: db}
stringData: {password: hunter2}
---
apiVersion: batch/v1
kind: Job
metadata: {name: check}
spec:
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: check
        image: flotilla.local/busybox:1
        command: ["sh", "-c", "test \"$PASSWORD\" = hunter2 && echo secret-ok"]
        env:
        - name: PASSWORD
          valueFrom:
            secretKeyRef: {name: db, key: password}
---
apiVersion: v1
kind: Pod
metadata: {name: hog}
spec:
  restartPolicy: Never
  containers:
  - name: hog
    image: flotilla.local/busybox:1
    command: ["dd", "if=/dev/zero", "of=/dev/null", "bs=128M", "count=1"]
    resources:
      limits: {memory: 24Mi}
---
apiVersion: v1
kind: Pod
metadata: {name: vault}
spec:
  volumes: [{name: creds, secret: {secretName: db}}]
  containers:
  - name: app
    image: flotilla.local/busybox:1
    command: ["sleep", "600"]
    volumeMounts: [{name: creds, mountPath: /creds}]
"#,
    );
    a.ok(&["apply", "-f", &m]);
    a.eventually(60, "the Job's pod Succeeded", || {
        pods_with(&a, "batch.kubernetes.io/job-name=check")
            .first()
            .is_some_and(|p| p["status"]["phase"] == "Succeeded")
    });
    let p = &pods_with(&a, "batch.kubernetes.io/job-name=check")[0];
    assert_eq!(a.ok(&["logs", &name(p)]), "secret-ok\n");
    assert_eq!(
        p["status"]["containerStatuses"][0]["state"]["terminated"]["reason"],
        "Completed"
    );
    a.eventually(30, "the Job complete", || {
        a.json(&["get", "job", "check"])["status"]["succeeded"] == 1
    });
    // A Secret volume: the key as a file, read-only inside, following the Secret.
    a.eventually(60, "the secret as a file", || {
        a.cli(&["exec", "vault", "--", "cat", "/creds/password"])
            .stdout
            .starts_with(b"hunter2")
    });
    let denied = a.cli(&[
        "exec",
        "vault",
        "--",
        "sh",
        "-c",
        "echo x > /creds/password",
    ]);
    assert_ne!(
        denied.status.code(),
        Some(0),
        "a secret volume is read-only"
    );
    let rotated = manifest(
        &a,
        "rotated.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata: {name: db}\nstringData: {password: rotated}\n",
    );
    a.ok(&["apply", "-f", &rotated]);
    a.eventually(30, "the file follows the Secret", || {
        a.cli(&["exec", "vault", "--", "cat", "/creds/password"])
            .stdout
            .starts_with(b"rotated")
    });

    a.eventually(30, "the hog OOMKilled", || {
        a.pod("hog")
            .is_some_and(|p| p["status"]["phase"] == "Failed")
    });
    let t = &a.container_status("hog")["state"]["terminated"];
    assert_eq!(t["reason"], "OOMKilled", "{t}");
    assert_eq!(t["exitCode"], 137);
    assert!(a.ok(&["get", "pod", "hog"]).contains("OOMKilled"));
    // The pod has a cgroup of its own, limited to the sum of its containers' limits.
    let uid = a.pod("hog").unwrap()["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    let pod_cg = flotilla::node::pods::containers::pod_cgroup(&uid);
    assert_eq!(
        flotilla_runtime::cgroups::memory_limit(&pod_cg),
        Some(24 << 20)
    );
    assert!(a.ok(&["describe", "pod", "hog"]).contains("OOMKilled"));
}

#[test]
fn init_containers_memory_emptydirs_hostpaths_and_following_logs() {
    let a = Agent::with_image();
    let host = a.data_dir().join("host-share");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("greeting"), "from the host\n").unwrap();
    let m = manifest(
        &a,
        "init.yaml",
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata: {{name: staged}}
spec:
  initContainers:
  - name: first
    image: flotilla.local/busybox:1
    command: ["sh", "-c", "echo one > /work/steps"]
    volumeMounts: [{{name: work, mountPath: /work}}]
  - name: second
    image: flotilla.local/busybox:1
    command: ["sh", "-c", "echo two >> /work/steps"]
    volumeMounts: [{{name: work, mountPath: /work}}]
  containers:
  - name: app
    image: flotilla.local/busybox:1
    command: ["sh", "-c", "cat /work/steps /host/greeting; i=0; while true; do echo tick-$i; i=$((i+1)); sleep 0.2; done"]
    volumeMounts:
    - {{name: work, mountPath: /work}}
    - {{name: share, mountPath: /host, readOnly: true}}
  volumes:
  - name: work
    emptyDir: {{medium: Memory}}
  - name: share
    hostPath: {{path: {}}}
"#,
            host.display()
        ),
    );
    a.ok(&["apply", "-f", &m]);
    a.eventually(60, "the app running after both init containers", || {
        a.pod("staged")
            .is_some_and(|p| p["status"]["phase"] == "Running")
    });
    let p = a.pod("staged").unwrap();
    let inits = p["status"]["initContainerStatuses"].as_array().unwrap();
    assert!(
        inits
            .iter()
            .all(|c| c["state"]["terminated"]["reason"] == "Completed")
    );
    a.eventually(10, "the first lines", || {
        a.ok(&["logs", "staged", "-c", "app"])
            .starts_with("one\ntwo\nfrom the host\n")
    });
    // The Memory emptyDir is a tmpfs; the hostPath is read-only inside.
    let mounts = a.ok(&["exec", "staged", "--", "cat", "/proc/mounts"]);
    assert!(
        mounts.lines().any(|l| l.starts_with("tmpfs /work ")),
        "{mounts}"
    );
    let denied = a.cli(&["exec", "staged", "--", "sh", "-c", "echo x > /host/new"]);
    assert_ne!(denied.status.code(), Some(0));
    // -c names the container; a name the pod does not have is refused, saying so.
    assert_eq!(
        a.ok(&["exec", "staged", "-c", "app", "--", "cat", "/proc/1/comm"])
            .trim(),
        "sh"
    );
    let wrong = a.cli(&["exec", "staged", "-c", "nope", "--", "true"]);
    assert_ne!(wrong.status.code(), Some(0));
    let err = String::from_utf8_lossy(&wrong.stderr);
    assert!(err.contains("nope"), "{err}");
    // logs -f keeps printing new lines.
    let mut follow = a
        .command(crate::harness::BIN)
        .args(["logs", "staged", "-f", "--tail", "1"])
        .env("FLOTILLA_CONFIG", a.config())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = follow.stdout.take().unwrap();
    let mut buf = Vec::new();
    let start = std::time::Instant::now();
    while buf.iter().filter(|b| **b == b'\n').count() < 4 {
        let mut chunk = [0u8; 256];
        let n = std::io::Read::read(&mut out, &mut chunk).unwrap();
        assert!(
            n > 0 && start.elapsed().as_secs() < 20,
            "logs -f ended: {buf:?}"
        );
        buf.extend_from_slice(&chunk[..n]);
    }
    let _ = follow.kill();
    let _ = follow.wait();
    let text = String::from_utf8_lossy(&buf);
    let ticks: Vec<u64> = text
        .lines()
        .filter_map(|l| l.strip_prefix("tick-")?.parse().ok())
        .collect();
    assert!(
        ticks.len() >= 4 && ticks.windows(2).all(|w| w[1] == w[0] + 1),
        "{text}"
    );

    // The node reports its capacity and conditions.
    let node = a.ok(&["describe", "node", "node-1"]);
    for want in ["MemoryPressure", "DiskPressure", "Ready", "pods:"] {
        assert!(node.contains(want), "{want} missing from:\n{node}");
    }
    let n = a.json(&["get", "node", "node-1"]);
    let st = &n["status"];
    assert_eq!(st["allocatable"]["pods"], "110");
    let mem = |q: &serde_json::Value| {
        q.as_str()
            .unwrap()
            .trim_end_matches("Ki")
            .parse::<u64>()
            .unwrap()
    };
    assert!(
        mem(&st["allocatable"]["memory"]) < mem(&st["capacity"]["memory"]),
        "{st}"
    );
    let addresses: Vec<&str> = st["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["type"].as_str().unwrap())
        .collect();
    assert_eq!(addresses, ["InternalIP", "Hostname"]);
    let version = st["nodeInfo"]["kubeletVersion"].as_str().unwrap();
    assert!(version.starts_with("flotilla-"), "{version}");
    let table = a.ok(&["get", "nodes"]);
    assert!(
        table.lines().next().unwrap().contains("VERSION") && table.contains(version),
        "{table}"
    );
}

#[test]
fn pods_get_addresses_on_the_node_network_and_reach_each_other() {
    let mut a = Agent::start_in_netns();
    let tar = flotilla_runtime::testing::test_image(a.data_dir());
    a.ok(&["image", "import", tar.to_str().unwrap()]);
    let pods = apply_web(&a);
    let ips: Vec<String> = pods
        .iter()
        .map(|p| p["status"]["podIP"].as_str().unwrap_or("").to_string())
        .collect();
    for ip in &ips {
        assert!(ip.starts_with("10.42.0."), "{ips:?}");
    }
    let mut distinct = ips.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 3, "{ips:?}");
    // The node (the agent's namespace) reaches a pod by its IP...
    let from_node = a
        .command("busybox")
        .args(["wget", "-qO-", &format!("http://{}:8080/", ips[0])])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&from_node.stdout),
        "<h1>Hello from Flotilla</h1>\n"
    );
    // ...and a pod reaches another.
    let first = name(&pods[0]);
    let page = a.ok(&[
        "exec",
        &first,
        "--",
        "wget",
        "-qO-",
        &format!("http://{}:8080/", ips[1]),
    ]);
    assert_eq!(page, "<h1>Hello from Flotilla</h1>\n");
    let hosts = a.ok(&["exec", &first, "--", "cat", "/etc/hosts"]);
    assert!(hosts.contains(&format!("{}\t{first}", ips[0])), "{hosts}");
    let wide = a.ok(&["get", "pods", "-o", "wide"]);
    assert!(wide.contains(&ips[2]), "{wide}");

    // Addresses survive an agent restart. An address held for a pod that left nothing else
    // behind (an agent killed between taking it and making the pod) is released.
    a.kill9();
    let ipam_file = a.data_dir().join("net/ipam.json");
    let mut held: serde_json::Map<String, Value> =
        serde_json::from_slice(&std::fs::read(&ipam_file).unwrap()).unwrap();
    held.insert("no-such-pod".into(), "10.42.0.200".into());
    std::fs::write(&ipam_file, serde_json::to_vec(&held).unwrap()).unwrap();
    a.spawn(false);
    std::thread::sleep(std::time::Duration::from_secs(2));
    let again: Vec<String> = pods_with(&a, "app=web")
        .iter()
        .map(|p| p["status"]["podIP"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(again, ips);
    a.eventually(30, "the stray address released", || {
        !std::fs::read_to_string(&ipam_file)
            .unwrap_or_default()
            .contains("no-such-pod")
    });
    // A pod made after the restart gets an address no running pod holds.
    a.ok(&["scale", "deployment", "web", "--replicas", "4"]);
    a.eventually(60, "a fourth pod with an address", || {
        pods_with(&a, "app=web")
            .iter()
            .filter(|p| {
                p["status"]["podIP"]
                    .as_str()
                    .is_some_and(|ip| !ip.is_empty())
            })
            .count()
            == 4
    });
    let four: std::collections::BTreeSet<String> = pods_with(&a, "app=web")
        .iter()
        .map(|p| p["status"]["podIP"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(four.len(), 4, "distinct addresses: {four:?}");

    // Deleting the pods frees their addresses and removes their veths.
    a.ok(&["delete", "deployment", "web"]);
    a.eventually(60, "veths and addresses released", || {
        let links = a.command("ip").args(["-o", "link"]).output().unwrap();
        let links = String::from_utf8_lossy(&links.stdout).to_string();
        let ipam = std::fs::read_to_string(a.data_dir().join("net/ipam.json")).unwrap_or_default();
        !links.contains(" vf") && (ipam.is_empty() || ipam == "{}")
    });
}

#[test]
fn jobs_and_pods_stop_at_their_deadlines_and_finished_jobs_go_after_their_ttl() {
    let a = Agent::with_image();
    let m = manifest(
        &a,
        "deadlines.yaml",
        r#"apiVersion: batch/v1
kind: Job
metadata: {name: slow}
spec:
  activeDeadlineSeconds: 4
  template:
    spec:
      restartPolicy: Never
      terminationGracePeriodSeconds: 1
      containers: [{name: c, image: flotilla.local/busybox:1, command: [sleep, "600"]}]
---
apiVersion: batch/v1
kind: Job
metadata: {name: brief}
spec:
  ttlSecondsAfterFinished: 3
  template:
    spec:
      restartPolicy: Never
      containers: [{name: c, image: flotilla.local/busybox:1, command: [echo, done]}]
---
apiVersion: v1
kind: Pod
metadata: {name: bounded}
spec:
  activeDeadlineSeconds: 4
  terminationGracePeriodSeconds: 1
  containers: [{name: c, image: flotilla.local/busybox:1, command: [sleep, "600"]}]
"#,
    );
    a.ok(&["apply", "-f", &m]);
    // The Job past its deadline fails as Kubernetes says it, and its pod goes.
    a.eventually(40, "slow failed past its deadline", || {
        let j = a.json(&["get", "job", "slow"]);
        j["status"]["conditions"][0]["reason"] == "DeadlineExceeded"
    });
    let j = a.json(&["get", "job", "slow"]);
    assert_eq!(j["status"]["conditions"][0]["type"], "Failed");
    assert_eq!(
        j["status"]["conditions"][0]["message"],
        "Job was active longer than specified deadline"
    );
    assert!(a.ok(&["get", "job", "slow"]).contains("Failed"));
    a.eventually(30, "slow's pod deleted", || {
        pods_with(&a, "batch.kubernetes.io/job-name=slow").is_empty()
    });
    // The pod past its own deadline is stopped and Failed, and not started again.
    a.eventually(40, "bounded failed past its deadline", || {
        a.pod("bounded").is_some_and(|p| {
            p["status"]["phase"] == "Failed" && p["status"]["reason"] == "DeadlineExceeded"
        })
    });
    let p = a.pod("bounded").unwrap();
    assert_eq!(
        p["status"]["message"],
        "Pod was active on the node longer than the specified deadline"
    );
    a.eventually(20, "bounded's container stopped", || {
        a.container_status("bounded")["state"]["terminated"].is_object()
    });
    std::thread::sleep(std::time::Duration::from_secs(2));
    let c = a.container_status("bounded");
    assert_eq!(c["restartCount"], 0, "{c}");
    assert!(c["state"]["terminated"].is_object(), "{c}");
    // The finished Job goes (with its pod) once its TTL has passed.
    a.eventually(60, "brief deleted after its TTL", || {
        !a.cli(&["get", "job", "brief"]).status.success()
    });
    a.eventually(30, "brief's pod deleted with it", || {
        pods_with(&a, "batch.kubernetes.io/job-name=brief").is_empty()
    });
}

#[test]
fn termination_messages_reach_the_container_status() {
    let a = Agent::with_image();
    let m = manifest(
        &a,
        "messages.yaml",
        r#"apiVersion: v1
kind: Pod
metadata: {name: says}
spec:
  restartPolicy: Never
  containers:
  - {name: c, image: flotilla.local/busybox:1, command: [sh, -c, 'echo goodbye > /dev/termination-log; exit 3']}
---
apiVersion: v1
kind: Pod
metadata: {name: elsewhere}
spec:
  restartPolicy: Never
  containers:
  - name: c
    image: flotilla.local/busybox:1
    command: [sh, -c, 'echo from-a-custom-path > /tmp/why']
    terminationMessagePath: /tmp/why
---
apiVersion: v1
kind: Pod
metadata: {name: falls-back}
spec:
  restartPolicy: Never
  containers:
  - name: c
    image: flotilla.local/busybox:1
    command: [sh, -c, 'echo first; echo it broke; exit 1']
    terminationMessagePolicy: FallbackToLogsOnError
---
apiVersion: v1
kind: Pod
metadata: {name: read-only}
spec:
  restartPolicy: Never
  containers:
  - name: c
    image: flotilla.local/busybox:1
    command: [sh, -c, 'echo still-written > /var/why']
    terminationMessagePath: /var/why
    securityContext: {readOnlyRootFilesystem: true}
"#,
    );
    a.ok(&["apply", "-f", &m]);
    let terminated = |pod: &str| a.container_status(pod)["state"]["terminated"].clone();
    for p in ["says", "elsewhere", "falls-back", "read-only"] {
        a.eventually(60, "the pod finished", || {
            a.pod(p).is_some_and(|x| {
                matches!(x["status"]["phase"].as_str(), Some("Succeeded" | "Failed"))
            })
        });
    }
    a.eventually(10, "messages in the statuses", || {
        terminated("says")["message"].is_string()
    });
    assert_eq!(terminated("says")["message"], "goodbye\n");
    assert_eq!(terminated("says")["exitCode"], 3);
    assert_eq!(terminated("elsewhere")["message"], "from-a-custom-path\n");
    assert_eq!(terminated("falls-back")["message"], "first\nit broke");
    // The message file is writable in a read-only root filesystem, as the kubelet mounts it.
    assert_eq!(terminated("read-only")["message"], "still-written\n");
}
