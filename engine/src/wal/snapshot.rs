//! Snapshots: one part file per shard, written incrementally by the server, and a
//! manifest that publishes them together with the log position replay starts from.
//!
//! Part file `snap-{id:020}-{part:05}.part` (written as `.part.tmp`, renamed by
//! [`SnapshotWriter::finish`] after an fsync):
//!
//! ```text
//! header  32 bytes: magic b"CSSNPART", version u32, part u32, id u64, crc32c of 0..24 u32, zero u32
//! entry   len u32 (8 + payload length), crc32c u32 of what follows, lsn u64, payload
//! ...
//! footer  0 u32, crc32c u32 of the next 16 bytes, entry count u64, highest lsn u64
//! ```
//!
//! Manifest `snapshot-{id:020}.manifest` (written as `.tmp`, fsynced, renamed, directory
//! fsynced; its presence is what makes the snapshot complete):
//!
//! ```text
//! magic b"CSSNMANI", version u32, parts u32, id u64, start segment u64,
//! start offset u64, highest lsn u64, crc32c of everything before u32
//! ```

use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::segment::{sync_dir, TMP_SUFFIX};
use super::{LogPosition, SnapshotEntry, WalError};

const PART_MAGIC: [u8; 8] = *b"CSSNPART";
const MANIFEST_MAGIC: [u8; 8] = *b"CSSNMANI";
const VERSION: u32 = 1;
const PART_HEADER: usize = 32;
const MANIFEST_LEN: usize = 52;

/// The file name of part `part` of snapshot `id`.
pub(crate) fn part_name(id: u64, part: usize) -> String {
    format!("snap-{id:020}-{part:05}.part")
}

/// The file name of the manifest of snapshot `id`.
pub(crate) fn manifest_name(id: u64) -> String {
    format!("snapshot-{id:020}.manifest")
}

/// `(id, part)` of a part file name.
pub(crate) fn parse_part_name(name: &str) -> Option<(u64, usize)> {
    let rest = name.strip_prefix("snap-")?.strip_suffix(".part")?;
    let (id, part) = rest.split_once('-')?;
    Some((id.parse().ok()?, part.parse().ok()?))
}

/// The id of a manifest file name.
pub(crate) fn parse_manifest_name(name: &str) -> Option<u64> {
    name.strip_prefix("snapshot-")?
        .strip_suffix(".manifest")?
        .parse()
        .ok()
}

/// Writes one part of a snapshot: the entries of one shard, in bounded steps.
///
/// Entries are buffered and written with ordinary file writes; [`SnapshotWriter::finish`]
/// syncs the file and gives it its final name. A writer dropped without `finish` (a failed
/// write, an abandoned snapshot) removes its temporary file, so a snapshot that fails on a
/// full disk does not keep the space the log needs; after a crash the next
/// [`open`](super::open) removes it.
#[derive(Debug)]
pub struct SnapshotWriter {
    out: BufWriter<File>,
    tmp_path: PathBuf,
    final_path: PathBuf,
    count: u64,
    max_lsn: u64,
    finished: bool,
}

impl Drop for SnapshotWriter {
    fn drop(&mut self) {
        if !self.finished {
            if let Err(e) = std::fs::remove_file(&self.tmp_path) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!("WAL: cannot remove {}: {e}", self.tmp_path.display());
                }
            }
        }
    }
}

impl SnapshotWriter {
    pub(crate) fn create(dir: &Path, id: u64, part: usize) -> Result<SnapshotWriter, WalError> {
        let final_path = dir.join(part_name(id, part));
        let tmp_path = dir.join(format!("{}{TMP_SUFFIX}", part_name(id, part)));
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp_path)
            .map_err(|e| WalError::io("create", &tmp_path, e))?;
        let mut header = [0u8; PART_HEADER];
        header[..8].copy_from_slice(&PART_MAGIC);
        header[8..12].copy_from_slice(&VERSION.to_le_bytes());
        header[12..16].copy_from_slice(&(part as u32).to_le_bytes());
        header[16..24].copy_from_slice(&id.to_le_bytes());
        let crc = crc32c::crc32c(&header[..24]);
        header[24..28].copy_from_slice(&crc.to_le_bytes());
        let mut out = BufWriter::with_capacity(1 << 20, file);
        out.write_all(&header)
            .map_err(|e| WalError::io("write", &tmp_path, e))?;
        Ok(SnapshotWriter {
            out,
            tmp_path,
            final_path,
            count: 0,
            max_lsn: 0,
            finished: false,
        })
    }

    /// Append one entry: `lsn` and an opaque `payload` chosen by the server (at most
    /// `u32::MAX - 8` bytes).
    pub fn write(&mut self, lsn: u64, payload: &[u8]) -> Result<(), WalError> {
        let len = u32::try_from(payload.len() + 8).map_err(|_| {
            WalError::Config(format!(
                "snapshot entry of {} bytes is too large",
                payload.len()
            ))
        })?;
        let lsn_bytes = lsn.to_le_bytes();
        let crc = crc32c::crc32c_append(crc32c::crc32c(&lsn_bytes), payload);
        let write = |out: &mut BufWriter<File>| -> std::io::Result<()> {
            out.write_all(&len.to_le_bytes())?;
            out.write_all(&crc.to_le_bytes())?;
            out.write_all(&lsn_bytes)?;
            out.write_all(payload)
        };
        write(&mut self.out).map_err(|e| WalError::io("write", &self.tmp_path, e))?;
        self.count += 1;
        self.max_lsn = self.max_lsn.max(lsn);
        Ok(())
    }

    /// Start writing back what was written so far without waiting for it (Linux's
    /// `POSIX_FADV_DONTNEED` starts writeback of the dirty pages, then drops those already
    /// clean: nothing reads a part back while it is written). Called between steps, so
    /// [`SnapshotWriter::finish`]'s sync finds only the last step's pages dirty instead of
    /// the whole part: the sync runs on the shard's thread, and its pause would otherwise
    /// grow with the part (14 ms for 1M keys here). Only a hint: an error is ignored.
    pub fn start_writeback(&mut self) {
        let _ = nix::fcntl::posix_fadvise(
            self.out.get_ref(),
            0,
            0,
            nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
        );
    }

    /// Write the footer, sync the file and give it its final name. The part counts only
    /// once [`Wal::complete_snapshot`](super::Wal::complete_snapshot) published the
    /// snapshot's manifest.
    pub fn finish(mut self) -> Result<(), WalError> {
        let mut footer = [0u8; 24];
        footer[8..16].copy_from_slice(&self.count.to_le_bytes());
        footer[16..24].copy_from_slice(&self.max_lsn.to_le_bytes());
        let crc = crc32c::crc32c(&footer[8..]);
        footer[4..8].copy_from_slice(&crc.to_le_bytes());
        let tmp = self.tmp_path.clone();
        self.out
            .write_all(&footer)
            .and_then(|()| self.out.flush())
            .map_err(|e| WalError::io("write", &tmp, e))?;
        self.out
            .get_ref()
            .sync_all()
            .map_err(|e| WalError::io("fsync", &tmp, e))?;
        std::fs::rename(&tmp, &self.final_path).map_err(|e| WalError::io("rename", &tmp, e))?;
        self.finished = true;
        Ok(())
    }
}

/// A snapshot's manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Manifest {
    pub id: u64,
    pub parts: usize,
    pub start: LogPosition,
    /// The highest LSN handed to the log when the snapshot was completed (records in
    /// segments deleted because of this snapshot are at or below it).
    pub max_lsn: u64,
}

impl Manifest {
    fn encode(&self) -> [u8; MANIFEST_LEN] {
        let mut m = [0u8; MANIFEST_LEN];
        m[..8].copy_from_slice(&MANIFEST_MAGIC);
        m[8..12].copy_from_slice(&VERSION.to_le_bytes());
        m[12..16].copy_from_slice(&(self.parts as u32).to_le_bytes());
        m[16..24].copy_from_slice(&self.id.to_le_bytes());
        m[24..32].copy_from_slice(&self.start.segment.to_le_bytes());
        m[32..40].copy_from_slice(&self.start.offset.to_le_bytes());
        m[40..48].copy_from_slice(&self.max_lsn.to_le_bytes());
        let crc = crc32c::crc32c(&m[..48]);
        m[48..52].copy_from_slice(&crc.to_le_bytes());
        m
    }

    fn decode(data: &[u8]) -> Result<Manifest, &'static str> {
        if data.len() != MANIFEST_LEN {
            return Err("manifest has the wrong size");
        }
        if data[..8] != MANIFEST_MAGIC {
            return Err("bad manifest magic");
        }
        if crc32c::crc32c(&data[..48]) != u32_at(data, 48) {
            return Err("manifest checksum mismatch");
        }
        if u32_at(data, 8) != VERSION {
            return Err("unsupported manifest version");
        }
        Ok(Manifest {
            parts: u32_at(data, 12) as usize,
            id: u64_at(data, 16),
            start: LogPosition {
                segment: u64_at(data, 24),
                offset: u64_at(data, 32),
            },
            max_lsn: u64_at(data, 40),
        })
    }

    /// Publish: write to a temporary file, fsync, rename, fsync the directory.
    pub fn publish(&self, dir: &Path) -> Result<(), WalError> {
        let final_path = dir.join(manifest_name(self.id));
        let tmp_path = dir.join(format!("{}{TMP_SUFFIX}", manifest_name(self.id)));
        let mut f = File::create(&tmp_path).map_err(|e| WalError::io("create", &tmp_path, e))?;
        f.write_all(&self.encode())
            .and_then(|()| f.sync_all())
            .map_err(|e| WalError::io("write", &tmp_path, e))?;
        std::fs::rename(&tmp_path, &final_path)
            .map_err(|e| WalError::io("rename", &tmp_path, e))?;
        sync_dir(dir)
    }

    /// Read and check the manifest at `path`.
    pub fn read(path: &Path) -> Result<Manifest, WalError> {
        let data = std::fs::read(path).map_err(|e| WalError::io("read", path, e))?;
        Manifest::decode(&data).map_err(|reason| WalError::corrupt(path, 0, reason))
    }
}

/// Count and highest LSN of a finished part, from its header and footer.
pub(crate) fn part_summary(path: &Path, id: u64, part: usize) -> Result<(u64, u64), WalError> {
    let mut f = File::open(path).map_err(|e| WalError::io("open", path, e))?;
    let len = f
        .metadata()
        .map_err(|e| WalError::io("stat", path, e))?
        .len();
    if len < (PART_HEADER + 24) as u64 {
        return Err(WalError::corrupt(path, 0, "snapshot part too short"));
    }
    let mut header = [0u8; PART_HEADER];
    f.read_exact(&mut header)
        .map_err(|e| WalError::io("read", path, e))?;
    check_part_header(&header, id, part).map_err(|r| WalError::corrupt(path, 0, r))?;
    let mut footer = [0u8; 24];
    use std::os::unix::fs::FileExt;
    f.read_exact_at(&mut footer, len - 24)
        .map_err(|e| WalError::io("read", path, e))?;
    parse_footer(&footer).map_err(|r| WalError::corrupt(path, len - 24, r))
}

fn check_part_header(h: &[u8], id: u64, part: usize) -> Result<(), &'static str> {
    if h[..8] != PART_MAGIC {
        return Err("bad snapshot part magic");
    }
    if crc32c::crc32c(&h[..24]) != u32_at(h, 24) {
        return Err("snapshot part header checksum mismatch");
    }
    if u32_at(h, 8) != VERSION {
        return Err("unsupported snapshot part version");
    }
    if u32_at(h, 12) as usize != part || u64_at(h, 16) != id {
        return Err("snapshot part header names another snapshot or part");
    }
    Ok(())
}

fn parse_footer(f: &[u8]) -> Result<(u64, u64), &'static str> {
    if u32_at(f, 0) != 0 || crc32c::crc32c(&f[8..24]) != u32_at(f, 4) {
        return Err("bad snapshot part footer");
    }
    Ok((u64_at(f, 8), u64_at(f, 16)))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut x = [0u8; 4];
    x.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(x)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

/// Streams the entries of a snapshot's parts, in part order.
pub(crate) struct PartsReader {
    dir: PathBuf,
    id: u64,
    parts: usize,
    next_part: usize,
    current: Option<PartReader>,
    failed: bool,
}

struct PartReader {
    path: PathBuf,
    input: BufReader<File>,
    offset: u64,
    count: u64,
}

impl PartsReader {
    pub fn new(dir: &Path, id: u64, parts: usize) -> PartsReader {
        PartsReader {
            dir: dir.to_path_buf(),
            id,
            parts,
            next_part: 0,
            current: None,
            failed: false,
        }
    }

    fn open_part(&self, part: usize) -> Result<PartReader, WalError> {
        let path = self.dir.join(part_name(self.id, part));
        let f = File::open(&path).map_err(|e| WalError::io("open", &path, e))?;
        let mut input = BufReader::with_capacity(1 << 20, f);
        let mut header = [0u8; PART_HEADER];
        input
            .read_exact(&mut header)
            .map_err(|e| WalError::io("read", &path, e))?;
        check_part_header(&header, self.id, part).map_err(|r| WalError::corrupt(&path, 0, r))?;
        Ok(PartReader {
            path,
            input,
            offset: PART_HEADER as u64,
            count: 0,
        })
    }

    fn next_entry(&mut self) -> Option<Result<SnapshotEntry, WalError>> {
        loop {
            if self.current.is_none() {
                if self.next_part >= self.parts {
                    return None;
                }
                match self.open_part(self.next_part) {
                    Ok(r) => self.current = Some(r),
                    Err(e) => return Some(Err(e)),
                }
                self.next_part += 1;
            }
            let part = self.current.as_mut()?;
            match part.read_entry() {
                Ok(Some(entry)) => return Some(Ok(entry)),
                Ok(None) => self.current = None,
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

impl PartReader {
    fn read_entry(&mut self) -> Result<Option<SnapshotEntry>, WalError> {
        let at = self.offset;
        let path = self.path.clone();
        let eof = |e: std::io::Error| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                WalError::corrupt(&path, at, "snapshot part ends without its footer")
            } else {
                WalError::io("read", &path, e)
            }
        };
        let mut head = [0u8; 8];
        self.input.read_exact(&mut head).map_err(eof)?;
        let len = u32_at(&head, 0) as usize;
        if len == 0 {
            let mut footer = [0u8; 24];
            footer[..8].copy_from_slice(&head);
            self.input.read_exact(&mut footer[8..]).map_err(eof)?;
            let (count, _) = parse_footer(&footer).map_err(|r| WalError::corrupt(&path, at, r))?;
            if count != self.count {
                return Err(WalError::corrupt(
                    &path,
                    at,
                    format!(
                        "footer counts {count} entries, the part holds {}",
                        self.count
                    ),
                ));
            }
            return Ok(None);
        }
        if len < 8 {
            return Err(WalError::corrupt(
                &path,
                at,
                "snapshot entry length too small",
            ));
        }
        let mut body = vec![0u8; len];
        self.input.read_exact(&mut body).map_err(eof)?;
        if crc32c::crc32c(&body) != u32_at(&head, 4) {
            return Err(WalError::corrupt(
                &path,
                at,
                "snapshot entry checksum mismatch",
            ));
        }
        self.offset += 8 + len as u64;
        self.count += 1;
        let lsn = u64_at(&body, 0);
        let mut payload = Bytes::from(body);
        let payload = payload.split_off(8);
        Ok(Some(SnapshotEntry { lsn, payload }))
    }
}

impl Iterator for PartsReader {
    type Item = Result<SnapshotEntry, WalError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let item = self.next_entry();
        if matches!(item, Some(Err(_))) {
            self.failed = true;
        }
        item
    }
}
