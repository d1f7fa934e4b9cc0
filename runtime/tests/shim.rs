//! Containers under their shims: they outlive whoever started them, their logs keep growing,
//! and their exit is recorded, read back by a new runtime instance.

mod common;

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{Node, runtime};
use flotilla_runtime::cgroups;
use flotilla_runtime::container::ContainerStatus;

#[test]
fn the_shim_records_output_and_exit() {
    let n = Node::new();
    let rt = runtime(&n.root());
    let s = n.spec("exit", "echo out-line; echo err-line >&2; exit 7");
    rt.start(&s, &n.layers, n.log(&s.id, 1 << 20, 3)).unwrap();
    let exit = rt
        .wait_exit(&s.id, Duration::from_secs(10))
        .unwrap()
        .expect("an exit record");
    assert_eq!((exit.code, exit.signal, exit.oom_killed), (7, None, false));
    let logs = rt.logs(&s.id, None).unwrap();
    let lines: Vec<(&str, &str)> = logs
        .iter()
        .map(|r| (r.stream.as_str(), r.content.as_str()))
        .collect();
    assert!(
        lines.contains(&("stdout", "out-line")) && lines.contains(&("stderr", "err-line")),
        "{lines:?}"
    );
    assert!(
        logs.iter()
            .all(|r| r.time.starts_with("20") && r.time.ends_with('Z'))
    );
}

/// `stdin: true`: the container's stdin stays open (a read waits instead of ending), and what
/// clients write to its attach socket, one after another, reaches it. Without it a read ends
/// at once and there is no socket.
#[test]
fn stdin_stays_open_and_attach_socket_clients_feed_it() {
    let n = Node::new();
    let rt = runtime(&n.root());
    let mut s = n.spec(
        "stdin",
        "read a; echo \"got $a\"; read b; echo \"got $b\"; exit 4",
    );
    s.stdin = true;
    rt.start(&s, &n.layers, n.log(&s.id, 1 << 20, 1)).unwrap();
    let sock = rt.attach_socket(&s.id).expect("an attach socket");
    // Nothing read yet: the container waits on its open stdin.
    std::thread::sleep(Duration::from_millis(300));
    assert!(rt.wait_exit(&s.id, Duration::ZERO).unwrap().is_none());
    for line in ["first\n", "second\n"] {
        // Each client hangs up after its line; the next one finds stdin still open.
        let mut c = std::os::unix::net::UnixStream::connect(&sock).unwrap();
        c.write_all(line.as_bytes()).unwrap();
    }
    let exit = rt
        .wait_exit(&s.id, Duration::from_secs(10))
        .unwrap()
        .expect("an exit record");
    assert_eq!(exit.code, 4);
    let out: Vec<String> = rt
        .logs(&s.id, None)
        .unwrap()
        .into_iter()
        .map(|r| r.content)
        .collect();
    assert_eq!(out, ["got first", "got second"]);

    let mut closed = n.spec("nostdin", "read a; echo \"read ended $?\"");
    closed.stdin = false;
    rt.start(&closed, &n.layers, n.log(&closed.id, 1 << 20, 1))
        .unwrap();
    rt.wait_exit(&closed.id, Duration::from_secs(10))
        .unwrap()
        .expect("an exit record");
    assert!(rt.attach_socket(&closed.id).is_none());
    let out: Vec<String> = rt
        .logs(&closed.id, None)
        .unwrap()
        .into_iter()
        .map(|r| r.content)
        .collect();
    assert_eq!(out, ["read ended 1"]);
}

#[test]
fn without_the_pump_program_the_shim_pumps_itself() {
    let n = Node::new();
    // Where the pump program would be written, a file: the shim cannot write it (as on a data
    // dir it cannot execute from), so it carries on with the same code in its own process.
    std::fs::create_dir_all(n.root()).unwrap();
    std::fs::write(n.root().join("bin"), b"not a directory").unwrap();
    let rt = runtime(&n.root());
    let s = n.spec("nopump", "echo still-logged; exit 3");
    rt.start(&s, &n.layers, n.log(&s.id, 1 << 20, 1)).unwrap();
    let exit = rt
        .wait_exit(&s.id, Duration::from_secs(10))
        .unwrap()
        .expect("an exit record");
    assert_eq!((exit.code, exit.signal), (3, None));
    let logs = rt.logs(&s.id, None).unwrap();
    assert!(logs.iter().any(|r| r.content == "still-logged"), "{logs:?}");
}

#[test]
fn a_container_outlives_the_process_that_started_it_and_is_readopted() {
    let n = Node::new();
    let s = n.spec(
        "outlive",
        "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.05; done",
    );
    let log = n.log(&s.id, 1 << 20, 2);
    // The starter is a forked child of this test: it starts the container, reports the pid and
    // then waits to be killed, as an agent that crashes would.
    let (mut r, w) = std::os::unix::net::UnixStream::pair().unwrap();
    // SAFETY: the child only starts the container and writes to the socket before sleeping.
    match unsafe { nix::unistd::fork() }.unwrap() {
        nix::unistd::ForkResult::Child => {
            let code = match runtime(&n.root()).start(&s, &n.layers, log.clone()) {
                Ok(pid) => {
                    let _ = writeln!(&w, "{pid}");
                    std::thread::sleep(Duration::from_secs(60));
                    0
                }
                Err(e) => {
                    let _ = writeln!(&w, "error {e}");
                    1
                }
            };
            unsafe { libc::_exit(code) };
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(w);
            let mut line = String::new();
            let mut buf = [0u8; 64];
            while !line.ends_with('\n') {
                let k = r.read(&mut buf).unwrap();
                assert!(k > 0, "starter died before answering");
                line.push_str(&String::from_utf8_lossy(&buf[..k]));
            }
            let pid: i32 = line
                .trim()
                .parse()
                .unwrap_or_else(|_| panic!("starter said {line:?}"));
            nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL).unwrap();
            nix::sys::wait::waitpid(child, None).unwrap();

            // A new runtime instance finds the container running, with the same pid.
            let rt = runtime(&n.root());
            assert_eq!(rt.list().unwrap(), vec![s.id.clone()]);
            let ContainerStatus::Running { pid: seen, .. } = rt.status(&s.id).unwrap() else {
                panic!("not running: {:?}", rt.status(&s.id))
            };
            assert_eq!(seen, pid);
            // The shim became the small pump program, keeping its pid (the container is its
            // child): what `ps` shows beside each container.
            let started: serde_json::Value = serde_json::from_slice(
                &std::fs::read(n.root().join("containers").join(&s.id).join("shim.json")).unwrap(),
            )
            .unwrap();
            let shim_pid = started["shimPid"].as_i64().unwrap();
            let pump = flotilla_runtime::shim::pump_program(&n.root()).unwrap();
            let exe = || std::fs::read_link(format!("/proc/{shim_pid}/exe")).unwrap();
            // It answers the starter first, then executes the pump.
            let t0 = Instant::now();
            while exe() != pump && t0.elapsed() < Duration::from_secs(5) {
                std::thread::sleep(Duration::from_millis(20));
            }
            assert_eq!(exe(), pump);
            let before = rt.logs(&s.id, None).unwrap().len();
            std::thread::sleep(Duration::from_millis(500));
            let after = rt.logs(&s.id, None).unwrap().len();
            assert!(
                after > before,
                "logs keep growing after the starter died ({before} -> {after})"
            );
            // Following picks up only what is written from now on, in order.
            let mut follow = rt.follow_logs(&s.id).unwrap();
            std::thread::sleep(Duration::from_millis(400));
            let new: Vec<u64> = follow
                .poll()
                .unwrap()
                .iter()
                .filter_map(|r| r.content.strip_prefix("tick ")?.parse().ok())
                .collect();
            assert!(new.len() >= 3, "ticks while following: {new:?}");
            assert!(
                new.windows(2).all(|w| w[1] == w[0] + 1),
                "in order, none lost: {new:?}"
            );
            // PID 1 of a container ignores SIGTERM unless it handles it (as sh does not), so
            // stop it as kubelet does after the grace period.
            rt.kill(&s.id, 9).unwrap();
            let exit = rt
                .wait_exit(&s.id, Duration::from_secs(10))
                .unwrap()
                .expect("exit recorded");
            assert_eq!((exit.code, exit.signal), (137, Some(9)));
        }
    }
}

#[test]
fn oom_kills_are_recorded_and_logs_rotate() {
    let n = Node::new();
    let rt = runtime(&n.root());
    let mut s = n.spec("oom", "dd if=/dev/zero of=/dev/null bs=128M count=1");
    s.resources.memory_bytes = Some(24 << 20);
    rt.start(&s, &n.layers, n.log(&s.id, 1 << 20, 2)).unwrap();
    let exit = rt
        .wait_exit(&s.id, Duration::from_secs(10))
        .unwrap()
        .unwrap();
    assert!(exit.oom_killed && exit.signal == Some(9), "{exit:?}");

    let s = n.spec(
        "chatty",
        "i=0; while [ $i -lt 3000 ]; do echo line-$i; i=$((i+1)); done",
    );
    let log = n.log(&s.id, 8192, 2);
    rt.start(&s, &n.layers, log.clone()).unwrap();
    rt.wait_exit(&s.id, Duration::from_secs(20))
        .unwrap()
        .unwrap();
    let files: Vec<PathBuf> = std::fs::read_dir(log.path.parent().unwrap())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().contains(&s.id))
        .collect();
    assert_eq!(files.len(), 3, "the log and 2 rotated files: {files:?}");
    for f in &files {
        assert!(
            std::fs::metadata(f).unwrap().len() <= 8192,
            "{} is over the limit",
            f.display()
        );
    }
    let tail = rt.logs(&s.id, Some(1)).unwrap();
    assert_eq!(
        tail[0].content, "line-2999",
        "the newest line survives rotation"
    );
}

#[test]
fn a_shim_that_cannot_start_its_container_says_why_and_leaves_nothing() {
    let n = Node::new();
    let rt = runtime(&n.root());
    let mut s = n.spec("bad", "true");
    s.network_ns = Some("/run/netns/flt-does-not-exist".into());
    let e = rt
        .start(&s, &n.layers, n.log(&s.id, 1 << 20, 1))
        .unwrap_err();
    assert!(
        e.to_string().contains("starting the shim of container"),
        "{e}"
    );
    assert!(rt.list().unwrap().is_empty(), "no bundle left");
    assert!(!cgroups::dir("memory", &s.cgroup_path).exists());
}

#[test]
fn stop_sends_sigterm_then_sigkill_after_the_grace_period() {
    let n = Node::new();
    let rt = runtime(&n.root());
    // Handles SIGTERM: ends cleanly within the grace period.
    let polite = n.spec(
        "polite",
        "trap 'echo bye; exit 0' TERM; while true; do sleep 0.1; done",
    );
    rt.start(&polite, &n.layers, n.log(&polite.id, 1 << 20, 1))
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let t = std::time::Instant::now();
    let exit = rt
        .stop(&polite.id, Duration::from_secs(5))
        .unwrap()
        .unwrap();
    assert_eq!((exit.code, exit.signal), (0, None));
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "did not wait for the grace period"
    );
    assert!(
        rt.logs(&polite.id, None)
            .unwrap()
            .iter()
            .any(|r| r.content == "bye")
    );
    // Ignores SIGTERM (PID 1 without a handler): killed once the grace period is over.
    let stubborn = n.spec("stubborn", "while true; do sleep 0.1; done");
    rt.start(&stubborn, &n.layers, n.log(&stubborn.id, 1 << 20, 1))
        .unwrap();
    let t = std::time::Instant::now();
    let exit = rt
        .stop(&stubborn.id, Duration::from_millis(700))
        .unwrap()
        .unwrap();
    assert_eq!(exit.signal, Some(9));
    assert!(
        t.elapsed() >= Duration::from_millis(700),
        "the grace period was given"
    );
}

#[test]
fn exec_runs_inside_the_container_and_returns_output_and_code() {
    let n = Node::new();
    let rt = runtime(&n.root());
    let mut s = n.spec("exec", "echo hello > /tmp/marker; exec sleep 60");
    s.env.push("GREETING=from-the-spec".into());
    rt.start(&s, &n.layers, n.log(&s.id, 1 << 20, 2)).unwrap();
    let secs = Duration::from_secs(10);
    let sh = |script: &str| vec!["sh".to_string(), "-c".to_string(), script.to_string()];
    // Wait until the container has written its marker (it runs its first line right away).
    let deadline = std::time::Instant::now() + secs;
    loop {
        let o = rt.exec(&s.id, &sh("cat /tmp/marker"), secs).unwrap();
        if o.code == Some(0) {
            assert_eq!(String::from_utf8_lossy(&o.stdout), "hello\n");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "marker never appeared: {o:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Same filesystem, env, PID namespace (the container's init is pid 1) and cgroup.
    let o = rt
        .exec(
            &s.id,
            &sh("echo $GREETING; cat /proc/1/cmdline | tr '\\0' ' '; echo; echo err >&2; exit 3"),
            secs,
        )
        .unwrap();
    assert_eq!(o.code, Some(3), "{o:?}");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.starts_with("from-the-spec\nsleep 60"), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&o.stderr), "err\n");
    // The capability bounding set is the default one: no CAP_SYS_ADMIN (bit 21).
    let o = rt
        .exec(&s.id, &sh("grep CapBnd /proc/self/status"), secs)
        .unwrap();
    let bnd = String::from_utf8_lossy(&o.stdout);
    let mask = u64::from_str_radix(bnd.split_whitespace().last().unwrap(), 16).unwrap();
    assert_eq!(mask & (1 << 21), 0, "{bnd}");
    assert_ne!(mask & 1, 0, "CAP_CHOWN kept: {bnd}");
    // A missing command is 127, as in a shell; a timeout kills the command.
    let o = rt.exec(&s.id, &["no-such-cmd".to_string()], secs).unwrap();
    assert_eq!(o.code, Some(127), "{o:?}");
    let o = rt
        .exec(&s.id, &sh("sleep 30; true"), Duration::from_millis(300))
        .unwrap();
    assert_eq!(o.code, None);
    // Nothing of it runs on (a zombie may stay: the container's init does not reap orphans).
    let o = rt
        .exec(&s.id, &sh("cat /proc/[0-9]*/cmdline | tr '\\0' ' '"), secs)
        .unwrap();
    let procs = String::from_utf8_lossy(&o.stdout);
    assert!(procs.contains("sleep 60"), "{procs:?}");
    assert!(!procs.contains("sleep 30"), "{procs:?}");
    rt.stop(&s.id, Duration::from_secs(1)).unwrap();
    assert!(rt.exec(&s.id, &sh("true"), secs).is_err());
}

#[test]
fn a_start_whose_shim_died_reads_as_lost_not_starting_for_ever() {
    let n = Node::new();
    let rt = runtime(&n.root());
    // What an agent killed in the middle of a start leaves: a bundle with the request, and
    // perhaps the pid of a shim that never wrote shim.json.
    let bundle = |id: &str| {
        let b = n.root().join("containers").join(id);
        std::fs::create_dir_all(&b).unwrap();
        std::fs::write(b.join("request.json"), b"{}").unwrap();
        b
    };
    let fresh = bundle("fresh");
    assert_eq!(rt.status("fresh").unwrap(), ContainerStatus::Starting);
    std::fs::write(fresh.join("shim.pid"), std::process::id().to_string()).unwrap();
    assert_eq!(
        rt.status("fresh").unwrap(),
        ContainerStatus::Starting,
        "its shim lives"
    );
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let gone_pid = gone.id();
    gone.wait().unwrap();
    std::fs::write(fresh.join("shim.pid"), gone_pid.to_string()).unwrap();
    assert_eq!(rt.status("fresh").unwrap(), ContainerStatus::Lost);
    // About when it was lost: its bundle's last change, which the agent's back-off counts from.
    let age = flotilla_runtime::shim::now_ms().saturating_sub(rt.changed_at_ms("fresh"));
    assert!(age < 60_000, "changed {age} ms ago");

    // A bundle being made, its request not written yet: starting.
    std::fs::create_dir_all(n.root().join("containers").join("making")).unwrap();
    assert_eq!(rt.status("making").unwrap(), ContainerStatus::Starting);
    std::fs::remove_dir(n.root().join("containers").join("making")).unwrap();

    // No shim ever ran: starting only for a while after the bundle was made.
    let old = bundle("old");
    std::fs::File::open(&old)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - Duration::from_secs(120))
        .unwrap();
    assert_eq!(rt.status("old").unwrap(), ContainerStatus::Lost);
    for id in ["fresh", "old"] {
        rt.delete(id, &format!("/flotilla-test/{id}")).unwrap();
        assert!(!n.root().join("containers").join(id).exists());
    }
}

#[test]
fn shims_starting_together_share_one_whole_pump_program() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("runtime");
    let paths: Vec<PathBuf> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..8)
            .map(|_| s.spawn(|| flotilla_runtime::shim::pump_program(&root).unwrap()))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(paths.windows(2).all(|w| w[0] == w[1]), "{paths:?}");
    let left: Vec<_> = std::fs::read_dir(root.join("bin"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        left.len(),
        1,
        "one program, no half-written copies: {left:?}"
    );
    // It is a whole program: it runs and says what it lacks.
    let out = std::process::Command::new(&paths[0]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "flotilla-pump: missing --root\n"
    );
}
