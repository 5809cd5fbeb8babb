//! Log segments: names, the segment header, and creating a preallocated, zero-filled
//! segment (on a helper thread, ahead of use).
//!
//! A segment is the file `{seq:020}.wal`. It starts with a 32-byte header, followed by
//! records (see [`super::record`]) and then zeros up to the segment size:
//!
//! ```text
//! offset size field
//!      0    8 magic    b"CSWALSEG"
//!      8    4 version  1
//!     12    4 zero
//!     16    8 seq      the segment's sequence number (matches the file name)
//!     24    4 crc      CRC32C of bytes 0..24
//!     28    4 zero
//! ```
//!
//! A new segment is written under a temporary name (`.tmp`), zero-filled to its full
//! size, synced, renamed into place and the directory synced, so a segment under its final
//! name always has a valid header and its blocks are allocated and written: an
//! `fdatasync` after appending to it flushes data, not block allocation.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::thread;

use super::WalError;

/// Size of the segment header; records start here.
pub(crate) const HEADER: u64 = 32;

const MAGIC: [u8; 8] = *b"CSWALSEG";
const VERSION: u32 = 1;

/// Suffix of files being written that are not yet valid (removed at open).
pub(crate) const TMP_SUFFIX: &str = ".tmp";

/// The file name of segment `seq`.
pub(crate) fn name(seq: u64) -> String {
    format!("{seq:020}.wal")
}

/// The path of segment `seq` in `dir`.
pub(crate) fn path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(name(seq))
}

/// The sequence number of a segment file name.
pub(crate) fn parse_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".wal")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The header of segment `seq`.
pub(crate) fn encode_header(seq: u64) -> [u8; HEADER as usize] {
    let mut h = [0u8; HEADER as usize];
    h[..8].copy_from_slice(&MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h[16..24].copy_from_slice(&seq.to_le_bytes());
    let crc = crc32c::crc32c(&h[..24]);
    h[24..28].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Check that `data` starts with a valid header for segment `seq`.
pub(crate) fn check_header(data: &[u8], seq: u64) -> Result<(), &'static str> {
    let Some(h) = data.get(..HEADER as usize) else {
        return Err("segment shorter than its header");
    };
    if h[..8] != MAGIC {
        return Err("bad segment magic");
    }
    let crc = u32::from_le_bytes([h[24], h[25], h[26], h[27]]);
    if crc32c::crc32c(&h[..24]) != crc {
        return Err("segment header checksum mismatch");
    }
    if u32::from_le_bytes([h[8], h[9], h[10], h[11]]) != VERSION {
        return Err("unsupported segment version");
    }
    let mut s = [0u8; 8];
    s.copy_from_slice(&h[16..24]);
    if u64::from_le_bytes(s) != seq {
        return Err("segment header names another sequence number");
    }
    Ok(())
}

/// `fsync` a directory, so renames and creations in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| WalError::io("fsync directory", dir, e))
}

/// Open an existing segment for reading and writing.
pub(crate) fn open_rw(path: &Path) -> Result<File, WalError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| WalError::io("open", path, e))
}

/// Write zeros over `[from, to)` of `file`.
pub(crate) fn zero_range(file: &File, from: u64, to: u64) -> io::Result<()> {
    const CHUNK: usize = 1 << 20;
    let zeros = vec![0u8; CHUNK.min(to.saturating_sub(from) as usize)];
    let mut at = from;
    while at < to {
        let n = ((to - at) as usize).min(CHUNK);
        file.write_all_at(&zeros[..n], at)?;
        at += n as u64;
    }
    Ok(())
}

/// Create segment `seq` in `dir`, `size` bytes long: header, zeros, synced, renamed into
/// place, directory synced. Returns the file, open for reading and writing.
pub(crate) fn create(dir: &Path, seq: u64, size: u64) -> Result<File, WalError> {
    let final_path = path(dir, seq);
    let tmp_path = dir.join(format!("{}{TMP_SUFFIX}", name(seq)));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp_path)
        .map_err(|e| WalError::io("create", &tmp_path, e))?;
    let result = file
        .write_all_at(&encode_header(seq), 0)
        .and_then(|()| zero_range(&file, HEADER, size.max(HEADER)))
        .and_then(|()| file.sync_all())
        .map_err(|e| WalError::io("preallocate", &tmp_path, e))
        .and_then(|()| {
            std::fs::rename(&tmp_path, &final_path)
                .map_err(|e| WalError::io("rename", &tmp_path, e))
        });
    if let Err(e) = result {
        // Best effort: do not leave a partial file taking space (it would be removed at
        // the next open anyway).
        let _ = std::fs::remove_file(&tmp_path);
        return Err(e);
    }
    sync_dir(dir)?;
    Ok(file)
}

/// A helper thread that creates the next segment while the current one fills.
pub(crate) struct Preparer {
    requests: Option<Sender<u64>>,
    ready: Receiver<(u64, Result<File, WalError>)>,
    thread: Option<thread::JoinHandle<()>>,
    /// The sequence number asked for and not yet received.
    pending: Option<u64>,
}

impl Preparer {
    /// Start the helper for segments of `size` bytes in `dir`.
    pub fn start(dir: PathBuf, size: u64) -> Result<Preparer, WalError> {
        let (req_tx, req_rx) = mpsc::channel::<u64>();
        let (ready_tx, ready_rx) = mpsc::channel();
        let thread = thread::Builder::new()
            .name("wal-prepare".into())
            .spawn(move || {
                while let Ok(seq) = req_rx.recv() {
                    if ready_tx.send((seq, create(&dir, seq, size))).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| WalError::Start(format!("segment preparer thread: {e}")))?;
        Ok(Preparer {
            requests: Some(req_tx),
            ready: ready_rx,
            thread: Some(thread),
            pending: None,
        })
    }

    /// Ask for segment `seq` unless a request is already outstanding.
    pub fn request(&mut self, seq: u64) {
        if self.pending.is_some() {
            return;
        }
        if let Some(tx) = &self.requests {
            if tx.send(seq).is_ok() {
                self.pending = Some(seq);
            }
        }
    }

    /// Whether a request is outstanding.
    pub fn is_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// The outcome of the outstanding request, if it is done (`block`: wait for it).
    pub fn take(&mut self, block: bool) -> Option<(u64, Result<File, WalError>)> {
        self.pending?;
        let got = if block {
            self.ready.recv().ok()
        } else {
            match self.ready.try_recv() {
                Ok(r) => Some(r),
                Err(TryRecvError::Empty) => return None,
                Err(TryRecvError::Disconnected) => None,
            }
        };
        self.pending = None;
        Some(got.unwrap_or_else(|| {
            (
                0,
                Err(WalError::Start("segment preparer thread stopped".into())),
            )
        }))
    }
}

impl Drop for Preparer {
    fn drop(&mut self) {
        self.requests = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(parse_name(&name(42)), Some(42));
        assert_eq!(parse_name("42.wal"), None);
        assert_eq!(parse_name("0000000000000000004x.wal"), None);
    }

    #[test]
    fn header_round_trip_and_checks() {
        let h = encode_header(7);
        assert_eq!(check_header(&h, 7), Ok(()));
        assert!(check_header(&h, 8).is_err());
        let mut bad = h;
        bad[3] ^= 1;
        assert!(check_header(&bad, 7).is_err());
        assert!(check_header(&h[..10], 7).is_err());
    }
}
