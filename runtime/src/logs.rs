//! Container logs in the CRI format kubelet uses, rotated by size.
//!
//! Each line is `TIMESTAMP STREAM TAG CONTENT`: an RFC 3339 UTC time with nanoseconds, `stdout`
//! or `stderr`, `F` for a full line or `P` for a partial one (a line longer than the buffer, or
//! the last bytes before the stream ended without a newline), then the bytes as written.
//! `LOG` grows to `max_bytes`, then becomes `LOG.1` (older ones shift up to `LOG.<keep>`).

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// Where and how much to keep.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LogConfig {
    pub path: PathBuf,
    pub max_bytes: u64,
    /// Rotated files kept besides the current one.
    pub keep: u32,
}

use crate::pump::rotated;

/// The writer: the shim's pump writes the records (see [`crate::pump`], which holds the code so
/// that the small `flotilla-pump` program is built from it alone).
pub use crate::pump::LogFile;

impl LogConfig {
    pub fn open(&self) -> io::Result<LogFile> {
        LogFile::open(&self.path, self.max_bytes, self.keep)
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

    use crate::pump::{civil_from_days, records};

    /// What the pump does with a stream that delivers `input` and ends.
    fn feed(w: &mut LogFile, stream: &str, input: &[u8]) {
        let (recs, _) = records(input, true);
        for (partial, r) in recs {
            w.write_record(stream, partial, &input[r]).unwrap();
        }
    }

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
        let mut w = cfg.open().unwrap();
        let input: Vec<u8> = (0..20)
            .flat_map(|i| format!("line {i}\n").into_bytes())
            .chain(b"no newline".to_vec())
            .collect();
        feed(&mut w, "stdout", &input);
        feed(&mut w, "stderr", b"oops\n");
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
        let mut w = cfg.open().unwrap();
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
