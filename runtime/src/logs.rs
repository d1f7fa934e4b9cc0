//! Container logs in the CRI format kubelet uses, rotated by size.
//!
//! Each line is `TIMESTAMP STREAM TAG CONTENT`: an RFC 3339 UTC time with nanoseconds, `stdout`
//! or `stderr`, `F` for a full line or `P` for a partial one (a line longer than the buffer, or
//! the last bytes before the stream ended without a newline), then the bytes as written.
//! `LOG` grows to `max_bytes`, then becomes `LOG.1` (older ones shift up to `LOG.<keep>`).

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Where and how much to keep.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LogConfig {
    pub path: PathBuf,
    pub max_bytes: u64,
    /// Rotated files kept besides the current one.
    pub keep: u32,
}

/// A size-rotated log file shared by the stdout and stderr readers.
pub struct LogWriter {
    cfg: LogConfig,
    file: File,
    size: u64,
}

fn rotated(p: &Path, n: u32) -> PathBuf {
    PathBuf::from(format!("{}.{n}", p.display()))
}

impl LogWriter {
    pub fn open(cfg: LogConfig) -> io::Result<LogWriter> {
        if let Some(d) = cfg.path.parent() {
            fs::create_dir_all(d)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&cfg.path)?;
        let size = file.metadata()?.len();
        Ok(LogWriter { cfg, file, size })
    }

    fn rotate(&mut self) -> io::Result<()> {
        if self.cfg.keep == 0 {
            self.file.set_len(0)?;
            self.size = 0;
            return Ok(());
        }
        for n in (1..self.cfg.keep).rev() {
            let from = rotated(&self.cfg.path, n);
            if from.exists() {
                fs::rename(&from, rotated(&self.cfg.path, n + 1))?;
            }
        }
        fs::rename(&self.cfg.path, rotated(&self.cfg.path, 1))?;
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.cfg.path)?;
        self.size = 0;
        Ok(())
    }

    /// Writes one record.
    pub fn write_record(&mut self, stream: &str, partial: bool, content: &[u8]) -> io::Result<()> {
        let ts = humantime_now();
        let mut rec = Vec::with_capacity(content.len() + 48);
        rec.extend_from_slice(ts.as_bytes());
        rec.push(b' ');
        rec.extend_from_slice(stream.as_bytes());
        rec.extend_from_slice(if partial { b" P " } else { b" F " });
        rec.extend_from_slice(content);
        rec.push(b'\n');
        if self.size > 0 && self.size + rec.len() as u64 > self.cfg.max_bytes {
            self.rotate()?;
        }
        self.file.write_all(&rec)?;
        self.size += rec.len() as u64;
        Ok(())
    }
}

/// Now as RFC 3339 UTC with nanoseconds, without a date crate.
fn humantime_now() -> String {
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
fn civil_from_days(z: i64) -> (i64, u32, u32) {
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

/// Longest line written as one record; longer lines are split into `P` records.
const MAX_LINE: usize = 16 * 1024;

/// Copies a stream into the log, line by line, until it ends.
pub fn pump(mut from: impl Read, stream: &'static str, to: Arc<Mutex<LogWriter>>) {
    let mut reader = BufReader::with_capacity(MAX_LINE, &mut from);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = match (&mut reader)
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut buf)
        {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        let full = buf.last() == Some(&b'\n');
        let content = if full { &buf[..n - 1] } else { &buf[..n] };
        let mut w = to.lock().expect("log writer lock");
        let _ = w.write_record(stream, !full, content);
    }
}

/// One parsed log record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub time: String,
    pub stream: String,
    pub partial: bool,
    pub content: String,
}

pub fn parse_record(line: &str) -> Option<Record> {
    let mut it = line.splitn(4, ' ');
    let time = it.next()?.to_string();
    let stream = it.next()?.to_string();
    let tag = it.next()?;
    let content = it.next().unwrap_or("").to_string();
    Some(Record {
        time,
        stream,
        partial: tag == "P",
        content,
    })
}

/// The last `tail` records of a container's logs, oldest first, across rotated files.
pub fn read_tail(path: &Path, keep: u32, tail: Option<usize>) -> io::Result<Vec<Record>> {
    let mut files: Vec<PathBuf> = (1..=keep)
        .rev()
        .map(|n| rotated(path, n))
        .filter(|p| p.exists())
        .collect();
    files.push(path.to_owned());
    let mut out = Vec::new();
    for f in files {
        match File::open(&f) {
            Ok(file) => {
                for line in BufReader::new(file).lines() {
                    if let Some(r) = parse_record(&line?) {
                        out.push(r);
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    if let Some(t) = tail {
        let skip = out.len().saturating_sub(t);
        out.drain(..skip);
    }
    Ok(out)
}

/// Follows a log as it grows, across rotations (`logs -f`). Polling, so it needs no inotify.
pub struct Follower {
    path: PathBuf,
    /// How many rotated files the writer keeps, to find the ones made between two polls.
    keep: u32,
    file: Option<File>,
    ino: u64,
    pending: Vec<u8>,
}

fn inode(p: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(p).ok().map(|m| m.ino())
}

impl Follower {
    /// Starts at the current end of the log: only records written from now on are returned.
    pub fn from_end(path: &Path, keep: u32) -> io::Result<Follower> {
        let mut f = Follower {
            path: path.to_owned(),
            keep,
            file: None,
            ino: 0,
            pending: Vec::new(),
        };
        if let Ok(mut file) = File::open(path) {
            use std::io::Seek;
            file.seek(io::SeekFrom::End(0))?;
            f.ino = inode(path).unwrap_or(0);
            f.file = Some(file);
        }
        Ok(f)
    }

    fn drain(&mut self) -> io::Result<()> {
        if let Some(file) = self.file.as_mut() {
            file.read_to_end(&mut self.pending)?;
        }
        Ok(())
    }

    /// The records written since the last call.
    pub fn poll(&mut self) -> io::Result<Vec<Record>> {
        let now = inode(&self.path);
        if now.is_some() && now != Some(self.ino) {
            // Rotated: the old file gets no more writes once renamed, so finish it first, then
            // every file rotated after it (newest last), then the new log.
            self.drain()?;
            let old = (1..=self.keep).find(|n| inode(&rotated(&self.path, *n)) == Some(self.ino));
            let newer_from = old.map_or(self.keep, |k| k - 1);
            for n in (1..=newer_from).rev() {
                if let Ok(mut f) = File::open(rotated(&self.path, n)) {
                    f.read_to_end(&mut self.pending)?;
                }
            }
            self.file = File::open(&self.path).ok();
            self.ino = now.unwrap_or(0);
        }
        self.drain()?;
        let mut out = Vec::new();
        while let Some(pos) = self.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=pos).collect();
            if let Some(r) = parse_record(String::from_utf8_lossy(&line[..line.len() - 1]).as_ref())
            {
                out.push(r);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_right() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(20_780), (2026, 11, 23));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn records_are_tagged_and_rotate_by_size() {
        let d = tempfile::tempdir().unwrap();
        let cfg = LogConfig {
            path: d.path().join("c.log"),
            max_bytes: 200,
            keep: 2,
        };
        let w = Arc::new(Mutex::new(LogWriter::open(cfg.clone()).unwrap()));
        let input: Vec<u8> = (0..20)
            .flat_map(|i| format!("line {i}\n").into_bytes())
            .chain(b"no newline".to_vec())
            .collect();
        pump(&input[..], "stdout", w.clone());
        pump(&b"oops\n"[..], "stderr", w);
        let all = read_tail(&cfg.path, 2, None).unwrap();
        assert!(all.len() < 22, "old lines rotate away: {}", all.len());
        let last = &all[all.len() - 2..];
        assert_eq!(
            (
                last[0].stream.as_str(),
                last[0].partial,
                last[0].content.as_str()
            ),
            ("stdout", true, "no newline")
        );
        assert_eq!(
            (
                last[1].stream.as_str(),
                last[1].partial,
                last[1].content.as_str()
            ),
            ("stderr", false, "oops")
        );
        assert!(
            last[0].time.ends_with('Z') && last[0].time.len() == 30,
            "{}",
            last[0].time
        );
        assert!(
            cfg.path.exists() && rotated(&cfg.path, 1).exists() && rotated(&cfg.path, 2).exists()
        );
        assert!(!rotated(&cfg.path, 3).exists(), "keep 2");
        for f in [cfg.path.clone(), rotated(&cfg.path, 1)] {
            assert!(fs::metadata(&f).unwrap().len() <= 200);
        }
        assert_eq!(read_tail(&cfg.path, 2, Some(1)).unwrap()[0].content, "oops");
    }

    #[test]
    fn following_sees_every_new_line_across_rotations() {
        let d = tempfile::tempdir().unwrap();
        let cfg = LogConfig {
            path: d.path().join("f.log"),
            max_bytes: 300,
            keep: 3,
        };
        let mut w = LogWriter::open(cfg.clone()).unwrap();
        w.write_record("stdout", false, b"before").unwrap();
        let mut f = Follower::from_end(&cfg.path, cfg.keep).unwrap();
        let mut seen = Vec::new();
        for i in 0..40 {
            w.write_record("stdout", false, format!("n{i}").as_bytes())
                .unwrap();
            if i % 7 == 0 {
                seen.extend(f.poll().unwrap().into_iter().map(|r| r.content));
            }
        }
        seen.extend(f.poll().unwrap().into_iter().map(|r| r.content));
        let want: Vec<String> = (0..40).map(|i| format!("n{i}")).collect();
        assert_eq!(seen, want, "no line lost or repeated, none from before");
        assert!(
            rotated(&cfg.path, 1).exists(),
            "the log did rotate meanwhile"
        );
    }
}
