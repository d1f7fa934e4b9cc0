//! Real containers from the busybox test image, as root, on this host's cgroups. Every test
//! removes its containers, cgroups, mounts and network namespaces, also when it fails.

mod common;

use common::{Node, unique};
use flotilla_runtime::cgroups;
use flotilla_runtime::container::{Exit, Stdio, wait};
use flotilla_runtime::spec::{ContainerSpec, Resources};

#[test]
fn exit_codes_and_output() {
    let n = Node::new();
    let (exit, out, err) = n.run(&n.spec("exit", "echo to-stdout; echo to-stderr >&2; exit 3"));
    assert_eq!(
        exit,
        Exit {
            code: 3,
            signal: None
        }
    );
    assert_eq!(out, "to-stdout\n");
    assert_eq!(err, "to-stderr\n");
}

#[test]
fn env_working_dir_user_and_hostname() {
    let n = Node::new();
    let mut s = n.spec("env", "echo $GREETING $(pwd) $(id -u):$(id -g) $(hostname)");
    s.env.push("GREETING=hello".into());
    s.cwd = "/tmp".into();
    s.uid = 65534;
    s.gid = 65534;
    s.hostname = Some("web-1".into());
    let (exit, out, _) = n.run(&s);
    assert_eq!(exit.code, 0);
    assert_eq!(out, "hello /tmp 65534:65534 web-1\n");
}

#[test]
fn memory_and_pids_limits_are_in_the_cgroup_and_the_container_is_cleaned_up() {
    let n = Node::new();
    let mut s = n.spec("limits", "sleep 30");
    s.resources = Resources {
        memory_bytes: Some(48 << 20),
        pids: Some(32),
        ..Default::default()
    };
    n.start(&s);
    assert_eq!(cgroups::memory_limit(&s.cgroup_path), Some(48 << 20));
    assert_eq!(cgroups::pids_limit(&s.cgroup_path), Some(32));
    n.rt.delete(&s.id, &s.cgroup_path).unwrap();
    assert!(
        !cgroups::dir("memory", &s.cgroup_path).exists(),
        "the cgroup goes with the container"
    );
}

#[test]
fn usage_is_read_back_from_the_cgroup() {
    let n = Node::new();
    // Burn some CPU, hold some memory, and keep a few processes alive while we look.
    // The script ends in `wait`: a last plain command would be exec'd by the shell, freeing
    // the string it holds.
    let s = n.spec("usage", "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; x=$(head -c 4000000 /dev/zero | tr '\\0' a); sleep 30 & sleep 30 & sleep 30 & wait");
    n.start(&s);
    let mut u = cgroups::usage(&s.cgroup_path);
    // While the 4 MB string is built, `head` and `tr` count as pids too: wait
    // for the steady state (string held, sleeps running) rather than any 3 pids.
    for _ in 0..100 {
        if u.pids >= 3 && u.memory_bytes > 1 << 20 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        u = cgroups::usage(&s.cgroup_path);
    }
    assert!(u.cpu_ns > 1_000_000, "at least a millisecond of CPU: {u:?}");
    assert!(u.memory_bytes > 1 << 20, "some memory charged: {u:?}");
    assert!(
        u.working_set_bytes > 1 << 20 && u.working_set_bytes <= u.memory_bytes,
        "the 4 MB string is in the working set, and the set within what is charged: {u:?}"
    );
    assert!(u.pids >= 3, "the shell and its sleeps: {u:?}");
    n.rt.delete(&s.id, &s.cgroup_path).unwrap();
    assert_eq!(
        cgroups::usage(&s.cgroup_path),
        cgroups::Usage::default(),
        "nothing left to read"
    );
}

#[test]
fn a_fork_bomb_stops_at_the_pids_limit() {
    let n = Node::new();
    let mut s = n.spec(
        "forkbomb",
        "i=0; while [ $i -lt 100 ]; do sleep 5 & i=$((i+1)); done; echo started $(jobs -p | wc -l)",
    );
    s.resources.pids = Some(20);
    let (_, out, err) = n.run(&s);
    assert!(
        err.contains("fork") || err.contains("Resource temporarily unavailable"),
        "stderr: {err}"
    );
    let started: usize = out
        .trim()
        .strip_prefix("started ")
        .unwrap_or("0")
        .trim()
        .parse()
        .unwrap_or(0);
    assert!(started < 20, "no more than the limit ran: {out}");
}

#[test]
fn an_allocation_past_the_memory_limit_is_oom_killed() {
    let n = Node::new();
    let mut s = n.spec("oom", "dd if=/dev/zero of=/dev/null bs=128M count=1");
    s.resources.memory_bytes = Some(24 << 20);
    let (exit, _, _) = n.run(&s);
    assert_eq!(exit.signal, Some(9), "killed by SIGKILL: {exit:?}");
    assert!(
        cgroups::oom_kills(&s.cgroup_path) >= 1,
        "the kernel's OOM killer did it"
    );
}

#[test]
fn a_read_only_rootfs_refuses_writes_and_capabilities_are_dropped() {
    let n = Node::new();
    let mut s = n.spec("ro", "touch /x");
    s.read_only_rootfs = true;
    let (exit, _, err) = n.run(&s);
    assert_ne!(exit.code, 0);
    assert!(err.contains("Read-only file system"), "{err}");

    let (exit, _, err) = n.run(&n.spec("caps", "ip link add flt0 type dummy"));
    assert_ne!(exit.code, 0, "no CAP_NET_ADMIN");
    assert!(err.contains("Operation not permitted"), "{err}");
    let (_, out, _) = n.run(&n.spec(
        "nnp",
        "grep NoNewPrivs /proc/self/status; cat /proc/kcore | wc -c",
    ));
    assert!(out.starts_with("NoNewPrivs:\t1"), "{out}");
    assert!(out.trim().ends_with('0'), "/proc/kcore is masked: {out}");
}

#[test]
fn two_containers_of_one_pod_talk_over_localhost() {
    let n = Node::new();
    let sb =
        flotilla_runtime::sandbox::create(&n.dir.path().join("runtime"), &unique("pod"), "web-pod")
            .unwrap();
    let guard = SandboxGuard(sb.clone());
    let join = |s: &mut ContainerSpec| {
        s.network_ns = Some(sb.net());
        s.ipc_ns = Some(sb.ipc());
        s.uts_ns = Some(sb.uts());
        s.hostname = None;
    };
    let mut server = n.spec("srv", "mkdir -p /tmp/www && echo pod-local > /tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www");
    join(&mut server);
    n.start(&server);
    let mut client = n.spec("cli", "hostname; for i in $(seq 1 50); do wget -qO- http://127.0.0.1:8080/ && exit 0; sleep 0.1; done; exit 1");
    join(&mut client);
    let (exit, out, err) = n.run(&client);
    assert_eq!(exit.code, 0, "{err}");
    assert_eq!(
        out, "web-pod\npod-local\n",
        "the pod's hostname, then the page over the pod's loopback"
    );
    // A container outside the pod's namespaces does not see it.
    let (exit, _, _) = n.run(&n.spec("outside", "wget -T 1 -qO- http://127.0.0.1:8080/"));
    assert_ne!(exit.code, 0);
    // Containers first, then the sandbox's namespace mounts, then the dir they were in.
    n.delete_containers();
    drop(guard);
    drop(n);
}

/// Removes a sandbox on drop.
struct SandboxGuard(flotilla_runtime::sandbox::Sandbox);
impl Drop for SandboxGuard {
    fn drop(&mut self) {
        flotilla_runtime::sandbox::remove(&self.0).unwrap();
        assert!(!self.0.dir.exists());
    }
}

#[test]
fn a_failed_create_leaves_nothing_behind() {
    let n = Node::new();
    let mut s = n.spec("bad", "true");
    s.args = vec!["/no/such/binary".into()];
    let (out, err) = n.logs(&s.id);
    let r = n.rt.run(&s, &n.layers, Stdio::files(&out, &err).unwrap());
    if let Ok(pid) = r {
        // Some runtimes report a missing binary only when starting; then it must fail to run.
        let exit = wait(pid).unwrap();
        assert_ne!(exit.code, 0);
        n.rt.delete(&s.id, &s.cgroup_path).unwrap();
    }
    assert!(
        !n.dir.path().join("runtime/containers").join(&s.id).exists(),
        "no bundle left"
    );
    assert!(
        !n.dir.path().join("runtime/state").join(&s.id).exists(),
        "no state left"
    );
    assert!(
        !cgroups::dir("memory", &s.cgroup_path).exists(),
        "no cgroup left"
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&s.id), "no mount left");
}
