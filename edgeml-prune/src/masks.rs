//! A compact binary file format for keep-masks, written atomically.
//!
//! Layout (all integers little-endian):
//!
//! | offset | size | content |
//! |---|---|---|
//! | 0 | 8 | magic `EDGEMLMK` |
//! | 8 | 4 | format version, `1` |
//! | 12 | 4 | number of layers `L` |
//!
//! then `L` records, each:
//!
//! | size | content |
//! |---|---|
//! | 4 | name length `m` in bytes (at most 65 536) |
//! | `m` | the layer name, UTF-8 |
//! | 8 | number of weights `n` |
//! | `⌈n/8⌉` | the mask, bit-packed: weight `i` is bit `i % 8` (least significant first) of byte `i / 8`; `1` keeps the weight, `0` prunes it; unused bits of the last byte are `0` |
//!
//! Nothing follows the last record. Decoding checks every length against the bytes
//! that remain before allocating, so a truncated or hostile file is an
//! [`Error::MaskFormat`], never a panic or a huge allocation.

use crate::error::{Error, Result};
use std::io::Write;
use std::path::Path;

const MAGIC: &[u8; 8] = b"EDGEMLMK";
const VERSION: u32 = 1;
const MAX_NAME: usize = 1 << 16;

/// Encodes named masks in the format above.
pub fn encode_masks(masks: &[(&str, &[bool])]) -> Vec<u8> {
    let payload: usize = masks
        .iter()
        .map(|(n, m)| 12 + n.len() + m.len().div_ceil(8))
        .sum();
    let mut out = Vec::with_capacity(16 + payload);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(masks.len() as u32).to_le_bytes());
    for (name, mask) in masks {
        out.extend_from_slice(&(name.len() as u32).to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&(mask.len() as u64).to_le_bytes());
        out.extend(mask.chunks(8).map(|c| {
            c.iter()
                .enumerate()
                .fold(0u8, |b, (i, &k)| b | (u8::from(k) << i))
        }));
    }
    out
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or_else(|| {
            Error::MaskFormat(format!(
                "truncated at byte {} reading {what} ({n} bytes needed)",
                self.pos
            ))
        })?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
}

/// Decodes a mask file's bytes into `(name, mask)` pairs, in file order.
///
/// # Errors
/// [`Error::MaskFormat`] for a wrong magic or version, truncation, a name that is not
/// UTF-8 or too long, a duplicate name, non-zero padding bits or trailing bytes.
pub fn decode_masks(bytes: &[u8]) -> Result<Vec<(String, Vec<bool>)>> {
    let mut r = Reader { bytes, pos: 0 };
    if r.take(8, "magic")? != MAGIC {
        return Err(Error::MaskFormat(
            "not an edgeml mask file (bad magic)".into(),
        ));
    }
    let version = r.u32("version")?;
    if version != VERSION {
        return Err(Error::MaskFormat(format!("unsupported version {version}")));
    }
    let count = r.u32("layer count")? as usize;
    // Each record takes at least 12 bytes: bound the allocation by the input.
    let mut out = Vec::with_capacity(count.min(bytes.len() / 12));
    for li in 0..count {
        let m = r.u32("name length")? as usize;
        if m > MAX_NAME {
            return Err(Error::MaskFormat(format!("layer {li}: name of {m} bytes")));
        }
        let name = std::str::from_utf8(r.take(m, "name")?)
            .map_err(|_| Error::MaskFormat(format!("layer {li}: name is not UTF-8")))?
            .to_owned();
        if out.iter().any(|(n, _): &(String, Vec<bool>)| *n == name) {
            return Err(Error::MaskFormat(format!("duplicate layer `{name}`")));
        }
        let n = r.u64("weight count")?;
        let nbytes = usize::try_from(n.div_ceil(8))
            .map_err(|_| Error::MaskFormat(format!("`{name}`: {n} weights")))?;
        let packed = r.take(nbytes, "mask bits")?;
        let n = n as usize; // fits: n/8 bytes are in memory
        let mut mask = Vec::with_capacity(n);
        for i in 0..n {
            mask.push((packed[i / 8] >> (i % 8)) & 1 == 1);
        }
        if !n.is_multiple_of(8) && packed[nbytes - 1] >> (n % 8) != 0 {
            return Err(Error::MaskFormat(format!(
                "`{name}`: non-zero padding bits"
            )));
        }
        out.push((name, mask));
    }
    if r.pos != bytes.len() {
        return Err(Error::MaskFormat(format!(
            "{} trailing bytes",
            bytes.len() - r.pos
        )));
    }
    Ok(out)
}

/// Writes `bytes` to `path` atomically: a temporary file in the same folder, flushed
/// and synced, then renamed over `path`.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let io = |e: std::io::Error| Error::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    let file_name = path
        .file_name()
        .ok_or_else(|| Error::InvalidArgument(format!("{} is not a file path", path.display())))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(file_name);
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = dir.map_or_else(|| Path::new(&tmp_name).to_path_buf(), |d| d.join(&tmp_name));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io)
}

/// Saves named masks to `path` in the format above, atomically (temporary file, then
/// rename).
///
/// # Errors
/// [`Error::Io`] when writing fails; the previous file, if any, is left intact.
pub fn save_masks(path: impl AsRef<Path>, masks: &[(&str, &[bool])]) -> Result<()> {
    write_atomic(path.as_ref(), &encode_masks(masks))
}

/// Loads masks saved by [`save_masks`].
///
/// # Errors
/// [`Error::Io`] when reading fails, [`Error::MaskFormat`] as [`decode_masks`].
pub fn load_masks(path: impl AsRef<Path>) -> Result<Vec<(String, Vec<bool>)>> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    decode_masks(&bytes)
}
