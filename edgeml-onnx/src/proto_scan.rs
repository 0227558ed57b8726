//! A pre-pass over the protobuf wire format that checks every length prefix on the way
//! to a packed repeated field before rust-protobuf sees the data.
//!
//! rust-protobuf 3.4 reserves capacity for a packed field from its declared length
//! (up to 10 M elements) *before* checking that the bytes exist, so a 40-byte file can
//! make it allocate 80 MB. This scan walks the messages that can contain packed fields
//! (Model → Graph → Node → Attribute → Tensor / SparseTensor, plus functions and
//! training info) and refuses any length-delimited field longer than what remains of
//! its enclosing message. It allocates nothing and touches each byte at most once.

use crate::{Error, Result};

#[derive(Clone, Copy, Debug)]
enum Msg {
    Model,
    Graph,
    Node,
    Attribute,
    Tensor,
    Sparse,
    Training,
    Function,
}

/// The message type of field `field` of `m`, if it is one we descend into.
fn child(m: Msg, field: u64) -> Option<Msg> {
    use Msg::*;
    Some(match (m, field) {
        (Model, 7) => Graph,
        (Model, 20) => Training,
        (Model, 25) => Function,
        (Graph, 1) => Node,
        (Graph, 5) => Tensor,
        (Graph, 15) => Sparse,
        (Node, 5) => Attribute,
        (Attribute, 5 | 10) => Tensor,
        (Attribute, 6 | 11) => Graph,
        (Attribute, 22 | 23) => Sparse,
        (Training, 1 | 2) => Graph,
        (Function, 7) => Node,
        (Function, 11) => Attribute,
        (Sparse, 1 | 2) => Tensor,
        _ => return None,
    })
}

fn varint(b: &[u8], pos: &mut usize) -> std::result::Result<u64, &'static str> {
    let mut v = 0u64;
    for shift in (0..70).step_by(7) {
        let byte = *b.get(*pos).ok_or("truncated varint")?;
        *pos += 1;
        if shift == 63 && byte > 1 {
            return Err("varint overflows 64 bits");
        }
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err("varint longer than 10 bytes")
}

fn scan_msg(b: &[u8], m: Msg, depth: u32, max_depth: u32) -> std::result::Result<(), String> {
    if depth > max_depth {
        return Err("messages nested deeper than the recursion limit".into());
    }
    let mut pos = 0usize;
    while pos < b.len() {
        let tag = varint(b, &mut pos)?;
        let (field, wire) = (tag >> 3, tag & 7);
        match wire {
            0 => {
                varint(b, &mut pos)?;
            }
            1 | 5 => {
                let n = if wire == 1 { 8 } else { 4 };
                if b.len() - pos < n {
                    return Err(format!("{m:?} field {field}: truncated fixed-width value"));
                }
                pos += n;
            }
            2 => {
                let len = varint(b, &mut pos)?;
                let rest = (b.len() - pos) as u64;
                if len > rest {
                    return Err(format!(
                        "{m:?} field {field} declares {len} bytes but only {rest} remain"
                    ));
                }
                let end = pos + len as usize;
                if let Some(c) = child(m, field) {
                    scan_msg(&b[pos..end], c, depth + 1, max_depth)?;
                }
                pos = end;
            }
            _ => return Err(format!("{m:?} field {field}: unsupported wire type {wire}")),
        }
    }
    Ok(())
}

/// Checks the length prefixes of `bytes` (an encoded `ModelProto`).
pub(crate) fn scan(bytes: &[u8], max_depth: u32) -> Result<()> {
    scan_msg(bytes, Msg::Model, 0, max_depth)
        .map_err(|e| Error::InvalidModel(format!("not a valid ONNX protobuf: {e}")))
}

/// Checks the length prefixes of `bytes` (an encoded `TensorProto`).
pub(crate) fn scan_tensor(bytes: &[u8]) -> Result<()> {
    scan_msg(bytes, Msg::Tensor, 0, 4)
        .map_err(|e| Error::InvalidModel(format!("not a valid ONNX TensorProto: {e}")))
}
