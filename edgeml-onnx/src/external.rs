//! ONNX external data: tensor bytes stored in a file next to the model.
//!
//! The `location` key is resolved relative to the model's folder only: absolute paths,
//! `..` components and symbolic links whose target leaves the folder are refused
//! (the class of CVE-2022-25882 and CVE-2024-27318), as are offsets and lengths beyond
//! the end of the file and lengths that disagree with the tensor's dims.

use crate::load::Ctx;
use crate::{Error, Result};
use onnx_protobuf::TensorProto;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};

fn unsafe_path(path: &str, reason: impl Into<String>) -> Error {
    Error::UnsafePath {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

/// Checks that `location` is a plain relative path and returns it joined to `base`,
/// after resolving symbolic links and checking that the result stays inside `base`.
pub(crate) fn resolve(base: &Path, location: &str) -> Result<PathBuf> {
    if location.is_empty() {
        return Err(unsafe_path(location, "empty location"));
    }
    if location.contains('\0') {
        return Err(unsafe_path(location, "NUL byte in path"));
    }
    // Refuse Windows drive letters and backslash roots on every host.
    let b = location.as_bytes();
    if location.starts_with('/')
        || location.starts_with('\\')
        || (b.len() >= 2 && b[1] == b':' && b[0].is_ascii_alphabetic())
    {
        return Err(unsafe_path(location, "absolute path"));
    }
    let rel = Path::new(location);
    for c in rel.components() {
        match c {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => {
                return Err(unsafe_path(location, "`..` leaves the model folder"));
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(unsafe_path(location, "absolute path"));
            }
        }
    }
    if location.split(['/', '\\']).any(|p| p == "..") {
        return Err(unsafe_path(location, "`..` leaves the model folder"));
    }
    let io = |p: &Path, e: std::io::Error| Error::Io {
        path: p.display().to_string(),
        source: e,
    };
    let base_c = base.canonicalize().map_err(|e| io(base, e))?;
    let joined = base.join(rel);
    let target = joined.canonicalize().map_err(|e| io(&joined, e))?;
    if !target.starts_with(&base_c) {
        return Err(unsafe_path(
            location,
            format!(
                "resolves to {} outside the model folder (symbolic link?)",
                target.display()
            ),
        ));
    }
    if !target.is_file() {
        return Err(unsafe_path(location, "not a regular file"));
    }
    Ok(target)
}

fn parse_u64(key: &str, v: &str, what: &str) -> Result<u64> {
    v.trim().parse::<u64>().map_err(|_| {
        Error::InvalidModel(format!(
            "{what}: external data {key} {v:?} is not a non-negative integer"
        ))
    })
}

/// Reads the bytes of an external tensor, which must be exactly `expect` bytes long.
pub(crate) fn read_external(
    tp: &TensorProto,
    what: &str,
    expect: usize,
    ctx: &Ctx<'_>,
) -> Result<Vec<u8>> {
    let mut location = None;
    let mut offset = 0u64;
    let mut length = None;
    for e in &tp.external_data {
        match e.key.as_str() {
            "location" => location = Some(e.value.as_str()),
            "offset" => offset = parse_u64("offset", &e.value, what)?,
            "length" => length = Some(parse_u64("length", &e.value, what)?),
            _ => {} // "checksum" and future keys are informational.
        }
    }
    let location = location
        .ok_or_else(|| Error::InvalidModel(format!("{what}: external data without a location")))?;
    let base = ctx.base_dir.ok_or_else(|| {
        Error::InvalidModel(format!(
            "{what}: external data {location:?} needs the model's folder (load from a path or set LoadOptions::base_dir)"
        ))
    })?;
    let path = resolve(base, location)?;
    let io = |e: std::io::Error| Error::Io {
        path: path.display().to_string(),
        source: e,
    };
    let mut f = std::fs::File::open(&path).map_err(io)?;
    let size = f.metadata().map_err(io)?.len();
    if offset > size {
        return Err(Error::InvalidModel(format!(
            "{what}: external data offset {offset} is beyond the end of {location:?} ({size} bytes)"
        )));
    }
    let length = length.unwrap_or(size - offset);
    if length > size - offset {
        return Err(Error::InvalidModel(format!(
            "{what}: external data length {length} at offset {offset} is beyond the end of {location:?} ({size} bytes)"
        )));
    }
    if length != expect as u64 {
        return Err(Error::ShapeMismatch(format!(
            "{what}: dims declare {expect} bytes but external data length is {length}"
        )));
    }
    f.seek(SeekFrom::Start(offset)).map_err(io)?;
    let mut buf = vec![0u8; expect];
    f.read_exact(&mut buf).map_err(io)?;
    Ok(buf)
}
