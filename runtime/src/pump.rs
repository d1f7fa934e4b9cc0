//! The pump: what a shim becomes once its container runs.
//!
//! Starting a container needs libcontainer, serde and the rest of the runtime; keeping one
//! running needs only this: read the container's stdout and stderr pipes into the log file,
//! wait for the container to end, and write `exit.json`. So the shim, after it has answered the
//! agent, replaces itself (`execve`, same pid, so the container stays its child) with
//! `flotilla-pump`, a small static program built from this file alone by the crate's build
//! script and carried inside the runtime (see [`crate::shim`]). A shim then costs about 1 MiB
//! instead of the whole agent binary's pages and relocations.
//!
//! This file is compiled twice: as this module of the runtime (its unit tests, the log writer
//! the runtime's tests use, and the in-process fallback when the pump cannot be executed) and
//! as the `flotilla-pump` program (`pump/main.rs`). So it uses only `std`: no crate, no
//! `crate::` path. The few system calls `std` lacks (poll, waitpid, pidfd_open) are declared
//! here.

#![allow(dead_code)]

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::raw::{c_int, c_long, c_short};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Longest line written as one record; longer lines are split into `P` records.
pub const MAX_LINE: usize = 16 * 1024;

/// A size-rotated log file in the CRI format (see [`crate::logs`]).
pub struct LogFile {
    path: PathBuf,
    max_bytes: u64,
    keep: u32,
    file: File,
    size: u64,
}

/// `LOG.n`, the n-th newest rotated file of `LOG`.
pub fn rotated(p: &Path, n: u32) -> PathBuf {
    PathBuf::from(format!("{}.{n}", p.display()))
}

impl LogFile {
    pub fn open(path: &Path, max_bytes: u64, keep: u32) -> io::Result<LogFile> {
        if let Some(d) = path.parent() {
            fs::create_dir_all(d)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(LogFile {
            path: path.to_path_buf(),
            max_bytes,
            keep,
            file,
            size,
        })
    }

    fn rotate(&mut self) -> io::Result<()> {
        if self.keep == 0 {
            self.file.set_len(0)?;
            self.size = 0;
            return Ok(());
        }
        for n in (1..self.keep).rev() {
            let from = rotated(&self.path, n);
            if from.exists() {
                fs::rename(&from, rotated(&self.path, n + 1))?;
            }
        }
        fs::rename(&self.path, rotated(&self.path, 1))?;
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.size = 0;
        Ok(())
    }

    /// Writes one record: `TIME STREAM F|P CONTENT\n`.
    pub fn write_record(&mut self, stream: &str, partial: bool, content: &[u8]) -> io::Result<()> {
        let ts = rfc3339_now();
        let mut rec = Vec::with_capacity(content.len() + 48);
        rec.extend_from_slice(ts.as_bytes());
        rec.push(b' ');
        rec.extend_from_slice(stream.as_bytes());
        rec.extend_from_slice(if partial { b" P " } else { b" F " });
        rec.extend_from_slice(content);
        rec.push(b'\n');
        if self.size > 0 && self.size + rec.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        self.file.write_all(&rec)?;
        self.size += rec.len() as u64;
        Ok(())
    }
}

/// Now as RFC 3339 UTC with nanoseconds, without a date crate.
pub fn rfc3339_now() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    let (y, m, dd) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{dd:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_nanos()
    )
}

/// Days since 1970-01-01 to (year, month, day), Howard Hinnant's algorithm.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Cuts the records out of what a stream has delivered so far: each line up to `MAX_LINE`
/// bytes (newline included) is a full record, a longer run of bytes is cut into partial ones,
/// and at the end of the stream (`eof`) what is left is a partial record. Returns the records
/// as (partial, content range) and how many bytes they used up.
pub fn records(buf: &[u8], eof: bool) -> (Vec<(bool, std::ops::Range<usize>)>, usize) {
    let mut out = Vec::new();
    let mut at = 0;
    loop {
        let rest = &buf[at..];
        let window = &rest[..rest.len().min(MAX_LINE)];
        if let Some(nl) = window.iter().position(|b| *b == b'\n') {
            out.push((false, at..at + nl));
            at += nl + 1;
        } else if rest.len() >= MAX_LINE || (eof && !rest.is_empty()) {
            out.push((true, at..at + window.len()));
            at += window.len();
        } else {
            return (out, at);
        }
    }
}

/// Everything the pump needs, passed as its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// The runtime's root and the container's id: the bundle is `ROOT/containers/ID`.
    pub root: PathBuf,
    pub id: String,
    /// The read ends of the container's stdout and stderr pipes.
    pub out_fd: i32,
    pub err_fd: i32,
    /// The write end of the container's stdin pipe (`stdin: true`), or -1: the pump keeps it
    /// open and feeds it what clients write to `attach.sock` in the bundle, one at a time.
    pub in_fd: i32,
    /// The listening `attach.sock` the shim bound before it answered (so the socket is there
    /// as soon as the start returns), or -1.
    pub attach_fd: i32,
    /// The container's init, a child of this process.
    pub pid: i32,
    pub started_at_ms: u64,
    /// The cgroup file holding the `oom_kill N` counter, empty when unknown.
    pub oom_file: PathBuf,
    pub log: PathBuf,
    pub max_bytes: u64,
    pub keep: u32,
}

impl Job {
    /// `--root ROOT --id ID` first, so that `ps` and the benchmarks find a pump as they find
    /// a shim.
    pub fn to_args(&self) -> Vec<String> {
        let mut a = Vec::new();
        let mut put = |k: &str, v: String| {
            a.push(k.to_string());
            a.push(v);
        };
        put("--root", self.root.display().to_string());
        put("--id", self.id.clone());
        put("--out", self.out_fd.to_string());
        put("--err", self.err_fd.to_string());
        put("--in", self.in_fd.to_string());
        put("--attach", self.attach_fd.to_string());
        put("--pid", self.pid.to_string());
        put("--started", self.started_at_ms.to_string());
        put("--oom", self.oom_file.display().to_string());
        put("--log", self.log.display().to_string());
        put("--max-bytes", self.max_bytes.to_string());
        put("--keep", self.keep.to_string());
        a
    }

    pub fn from_args(args: &[String]) -> Result<Job, String> {
        let get = |k: &str| -> Result<&str, String> {
            args.iter()
                .position(|a| a == k)
                .and_then(|i| args.get(i + 1))
                .map(String::as_str)
                .ok_or_else(|| format!("missing {k}"))
        };
        fn num<T: std::str::FromStr>(k: &str, v: &str) -> Result<T, String> {
            v.parse().map_err(|_| format!("{k}: not a number: {v:?}"))
        }
        Ok(Job {
            root: PathBuf::from(get("--root")?),
            id: get("--id")?.to_string(),
            out_fd: num("--out", get("--out")?)?,
            err_fd: num("--err", get("--err")?)?,
            // A pump of an older runtime has no --in.
            in_fd: get("--in").map_or(Ok(-1), |v| num("--in", v))?,
            attach_fd: get("--attach").map_or(Ok(-1), |v| num("--attach", v))?,
            pid: num("--pid", get("--pid")?)?,
            started_at_ms: num("--started", get("--started")?)?,
            oom_file: PathBuf::from(get("--oom")?),
            log: PathBuf::from(get("--log")?),
            max_bytes: num("--max-bytes", get("--max-bytes")?)?,
            keep: num("--keep", get("--keep")?)?,
        })
    }

    fn bundle(&self) -> PathBuf {
        self.root.join("containers").join(&self.id)
    }
}

/// The socket in a container's bundle that feeds its stdin (`stdin: true`).
pub const ATTACH_SOCKET: &str = "attach.sock";

/// Feeds the container's stdin from `attach.sock` (the listener `listen_fd`, bound by the
/// shim): one client at a time, its bytes copied in until it hangs up; the pipe stays open
/// between clients (Kubernetes' `stdinOnce: false`), so the container never reads an end of
/// input. A small thread, gone with the pump.
fn feed_stdin(fd: i32, listen_fd: i32) {
    use std::os::unix::net::UnixListener;
    // SAFETY: the shim handed these fds over to us; nothing else in this process uses them.
    let mut pipe = unsafe { File::from_raw_fd(fd) };
    if listen_fd < 0 {
        // Nobody can attach; the pipe stays open all the same.
        std::mem::forget(pipe);
        return;
    }
    // SAFETY: as above.
    let listener = unsafe { UnixListener::from_raw_fd(listen_fd) };
    let _ = std::thread::Builder::new()
        .name("stdin".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let mut chunk = [0u8; 4096];
                loop {
                    match conn.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if pipe.write_all(&chunk[..n]).is_err() {
                                return;
                            }
                        }
                    }
                }
            }
        });
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Writes a file whole or not at all.
pub fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    fs::rename(&tmp, path)
}

/// How the container ended, as `exit.json` holds it (the runtime reads it with serde as
/// `shim::ExitRecord`; a unit test keeps the two in step).
pub fn exit_json(
    code: i32,
    signal: Option<i32>,
    oom_killed: bool,
    started_at_ms: u64,
    finished_at_ms: u64,
) -> String {
    let signal = signal.map_or("null".to_string(), |s| s.to_string());
    format!(
        "{{\"code\":{code},\"signal\":{signal},\"oomKilled\":{oom_killed},\
         \"startedAtMs\":{started_at_ms},\"finishedAtMs\":{finished_at_ms}}}"
    )
}

/// The `oom_kill N` counter of a cgroup v1 `memory.oom_control` or v2 `memory.events`.
pub fn oom_kill_count(text: &str) -> u64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix("oom_kill ")
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or(0)
}

#[repr(C)]
struct PollFd {
    fd: c_int,
    events: c_short,
    revents: c_short,
}

const POLLIN: c_short = 0x1;
const WNOHANG: c_int = 1;
const EINTR: i32 = 4;
/// `pidfd_open`: the same number on every architecture (new system calls share one table).
const SYS_PIDFD_OPEN: c_long = 434;

unsafe extern "C" {
    fn poll(fds: *mut PollFd, nfds: std::os::raw::c_ulong, timeout: c_int) -> c_int;
    fn waitpid(pid: c_int, status: *mut c_int, options: c_int) -> c_int;
    fn syscall(num: c_long, ...) -> c_long;
}

/// The container's exit as (code, signal): a signal `s` reads as code 128 + s, as shells and
/// Kubernetes show it.
fn decode(status: c_int) -> (i32, Option<i32>) {
    let sig = status & 0x7f;
    if sig == 0 {
        ((status >> 8) & 0xff, None)
    } else {
        (128 + sig, Some(sig))
    }
}

/// Reaps `pid` if it has ended (without blocking).
fn reap(pid: i32) -> Option<(i32, Option<i32>)> {
    let mut status: c_int = 0;
    // SAFETY: waitpid only writes the status int we pass.
    let r = unsafe { waitpid(pid, &mut status, WNOHANG) };
    if r == pid {
        // Stopped or continued children are not reported without WUNTRACED/WCONTINUED.
        Some(decode(status))
    } else if r < 0 && io::Error::last_os_error().raw_os_error() != Some(EINTR) {
        // Not our child any more (or never was): nothing to wait for.
        Some((255, None))
    } else {
        None
    }
}

/// One stream: its pipe and the bytes not yet written as a record.
struct Stream {
    name: &'static str,
    file: Option<File>,
    buf: Vec<u8>,
}

impl Stream {
    /// Reads what the pipe holds and writes the records it completes. Returns false at the end.
    fn read(&mut self, log: &mut Option<LogFile>) -> bool {
        let Some(f) = self.file.as_mut() else {
            return false;
        };
        let mut chunk = [0u8; 8192];
        let eof = match f.read(&mut chunk) {
            Ok(0) => true,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                false
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return true,
            Err(_) => true,
        };
        self.flush(log, eof);
        if eof {
            self.file = None;
        }
        !eof
    }

    fn flush(&mut self, log: &mut Option<LogFile>, eof: bool) {
        let (recs, used) = records(&self.buf, eof);
        if let Some(l) = log.as_mut() {
            for (partial, r) in recs {
                let _ = l.write_record(self.name, partial, &self.buf[r]);
            }
        }
        self.buf.drain(..used);
        if self.buf.capacity() > 2 * MAX_LINE {
            self.buf.shrink_to(2 * MAX_LINE);
        }
    }
}

/// Pumps the container's output into its log until it has ended and its pipes are drained (or
/// 2 s after it ended, if something else still holds them), then writes `exit.json`. Returns
/// the process exit code.
pub fn run(job: &Job) -> i32 {
    if job.in_fd >= 0 {
        feed_stdin(job.in_fd, job.attach_fd);
    }
    let mut log = LogFile::open(&job.log, job.max_bytes, job.keep).ok();
    // SAFETY: the shim handed these two fds over to us; nothing else in this process uses them.
    let (out, err) = unsafe { (File::from_raw_fd(job.out_fd), File::from_raw_fd(job.err_fd)) };
    let mut streams = [
        Stream {
            name: "stdout",
            file: Some(out),
            buf: Vec::new(),
        },
        Stream {
            name: "stderr",
            file: Some(err),
            buf: Vec::new(),
        },
    ];
    // SAFETY: pidfd_open takes a pid and flags and returns an fd or -1.
    let pidfd = unsafe { syscall(SYS_PIDFD_OPEN, job.pid as c_int, 0 as c_int) };
    // SAFETY: a non-negative return is a new fd that we own.
    let pidfd = (pidfd >= 0).then(|| unsafe { File::from_raw_fd(pidfd as i32) });
    let mut exit: Option<(i32, Option<i32>)> = None;
    let mut drain_until: Option<Instant> = None;
    loop {
        if exit.is_none() {
            exit = reap(job.pid);
            if exit.is_some() {
                drain_until = Some(Instant::now() + Duration::from_secs(2));
            }
        }
        let open: Vec<usize> = (0..2).filter(|i| streams[*i].file.is_some()).collect();
        if exit.is_some() && open.is_empty() {
            break;
        }
        let timeout = match (drain_until, &pidfd) {
            (Some(t), _) => {
                let left = t.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                left.as_millis() as c_int + 1
            }
            // Without pidfds (kernels before 5.3) look for the exit ten times a second.
            (None, None) => 100,
            (None, Some(_)) => -1,
        };
        let mut fds: Vec<PollFd> = open
            .iter()
            .map(|i| PollFd {
                fd: streams[*i].file.as_ref().map_or(-1, |f| f.as_raw_fd()),
                events: POLLIN,
                revents: 0,
            })
            .collect();
        if let (None, Some(p)) = (exit, &pidfd) {
            fds.push(PollFd {
                fd: p.as_raw_fd(),
                events: POLLIN,
                revents: 0,
            });
        }
        // SAFETY: fds is a valid array of fds.len() pollfd structs.
        let n = unsafe { poll(fds.as_mut_ptr(), fds.len() as _, timeout) };
        if n < 0 {
            if io::Error::last_os_error().raw_os_error() == Some(EINTR) {
                continue;
            }
            // poll itself failing leaves only waiting: keep the records and the exit.
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        for (k, i) in open.iter().enumerate() {
            if fds[k].revents != 0 {
                streams[*i].read(&mut log);
            }
        }
    }
    for s in streams.iter_mut() {
        s.flush(&mut log, true);
    }
    let (code, signal) = exit.unwrap_or((255, None));
    let oom = fs::read_to_string(&job.oom_file)
        .map(|t| oom_kill_count(&t))
        .unwrap_or(0);
    let record = exit_json(code, signal, oom > 0, job.started_at_ms, now_ms());
    let _ = write_atomic(&job.bundle().join("exit.json"), record.as_bytes());
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cut(input: &[u8], eof: bool) -> (Vec<(bool, Vec<u8>)>, usize) {
        let (recs, used) = records(input, eof);
        (
            recs.into_iter()
                .map(|(p, r)| (p, input[r].to_vec()))
                .collect(),
            used,
        )
    }

    #[test]
    fn lines_become_full_records_and_a_trailing_fragment_waits() {
        let (recs, used) = cut(b"one\ntwo\nthr", false);
        assert_eq!(
            recs,
            vec![(false, b"one".to_vec()), (false, b"two".to_vec())]
        );
        assert_eq!(used, 8);
        let (recs, used) = cut(b"thr", true);
        assert_eq!(recs, vec![(true, b"thr".to_vec())]);
        assert_eq!(used, 3);
        assert_eq!(cut(b"", true), (vec![], 0));
        assert_eq!(cut(b"\n", false), (vec![(false, vec![])], 1));
    }

    #[test]
    fn long_lines_are_cut_at_max_line() {
        // A line of MAX_LINE - 1 bytes and its newline fit one record.
        let mut fits = vec![b'a'; MAX_LINE - 1];
        fits.push(b'\n');
        let (recs, used) = cut(&fits, false);
        assert_eq!(recs, vec![(false, vec![b'a'; MAX_LINE - 1])]);
        assert_eq!(used, MAX_LINE);
        // One byte more: a partial record of MAX_LINE bytes, then the empty rest of the line.
        let mut over = vec![b'b'; MAX_LINE];
        over.push(b'\n');
        let (recs, _) = cut(&over, false);
        assert_eq!(recs, vec![(true, vec![b'b'; MAX_LINE]), (false, vec![])]);
        // Without a newline yet, a long run is still cut, a short one waits.
        let (recs, used) = cut(&vec![b'c'; MAX_LINE + 5], false);
        assert_eq!(recs, vec![(true, vec![b'c'; MAX_LINE])]);
        assert_eq!(used, MAX_LINE);
    }

    #[test]
    fn the_arguments_round_trip() {
        let job = Job {
            root: "/var/lib/flotilla/runtime".into(),
            id: "default_web-1_web".into(),
            out_fd: 5,
            err_fd: 7,
            in_fd: 9,
            attach_fd: 10,
            pid: 4242,
            started_at_ms: 1_795_000_000_000,
            oom_file: "/sys/fs/cgroup/memory/flotilla/x/memory.oom_control".into(),
            log: "/var/log/pods/x/0.log".into(),
            max_bytes: 10 << 20,
            keep: 3,
        };
        assert_eq!(Job::from_args(&job.to_args()), Ok(job.clone()));
        let mut args = job.to_args();
        args[5] = "five".into();
        assert_eq!(
            Job::from_args(&args),
            Err("--out: not a number: \"five\"".to_string())
        );
    }

    #[test]
    fn exit_statuses_decode_as_shells_show_them() {
        assert_eq!(decode(0), (0, None));
        assert_eq!(decode(3 << 8), (3, None));
        assert_eq!(decode(9), (137, Some(9)));
        assert_eq!(decode(15 | 0x80), (143, Some(15)), "core dumped");
    }

    #[test]
    fn the_oom_counter_is_read_from_v1_and_v2_files() {
        let v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n";
        let v2 = "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(oom_kill_count(v1), 2);
        assert_eq!(oom_kill_count(v2), 1);
        assert_eq!(oom_kill_count(""), 0);
    }
}
