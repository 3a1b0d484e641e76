//! `.npy` input and output (C order, little-endian; dtypes `b1`, `i4`, `i8`,
//! `f4`, `f8`).
//!
//! Reading checks the file before trusting it: the header length against the
//! bytes present, the header's nesting depth, the shape's element count for
//! overflow, and the claimed data size against the data actually present, so
//! a truncated or lying file is an error and never drives an allocation.
//! Only then do `npyz` parse the header and decode the data.
//!
//! ```
//! use loopvm_runtime::{npy, Tensor};
//! let t = Tensor::from_vec(&[2], vec![1.5f32, -2.0]).unwrap();
//! let bytes = npy::write(&t).unwrap();
//! let back = npy::read(&bytes).unwrap();
//! assert_eq!(back.as_slice::<f32>(), Some(&[1.5f32, -2.0][..]));
//! ```

use crate::{DType, Element, RuntimeError, Tensor};
use npyz::WriterBuilder;
use std::path::Path;

/// Headers longer than this are rejected (NumPy itself refuses headers over
/// 10 000 bytes by default).
const MAX_HEADER_LEN: usize = 1 << 16;

/// Deepest bracket nesting accepted in a header (the dict and the shape
/// tuple need 2).
const MAX_NESTING: usize = 4;

#[cold]
fn err(message: impl Into<String>) -> RuntimeError {
    RuntimeError::new("npy", message)
}

/// The `.npy` type string of a dtype.
fn type_str(d: DType) -> &'static str {
    match d {
        DType::Bool => "|b1",
        DType::I32 => "<i4",
        DType::I64 => "<i8",
        DType::F32 => "<f4",
        DType::F64 => "<f8",
        DType::U32 => "<u4",
        DType::U8 => "|u1",
        DType::F16 => "<f2",
        // What NumPy writes for ml_dtypes' `bfloat16` (a 2-byte void);
        // `np.load(f).view(ml_dtypes.bfloat16)` reads it back.
        DType::BF16 => "<V2",
    }
}

/// The dtype of a `.npy` type string, if loopvm supports it.
fn dtype_of(s: &str) -> Option<DType> {
    Some(match s {
        "|b1" | "<b1" => DType::Bool,
        "<i4" => DType::I32,
        "<i8" => DType::I64,
        "<f4" => DType::F32,
        "<f8" => DType::F64,
        "<u4" => DType::U32,
        "|u1" | "<u1" => DType::U8,
        "<f2" => DType::F16,
        // The only 2-byte void loopvm reads: ml_dtypes' `bfloat16`.
        "<V2" | "|V2" => DType::BF16,
        _ => return None,
    })
}

/// Splits a file into its header text and data, checking the magic string,
/// the version and the header length against the bytes present.
fn split_header(bytes: &[u8]) -> Result<(&str, &[u8]), RuntimeError> {
    let Some(rest) = bytes.strip_prefix(b"\x93NUMPY") else {
        return Err(err("not an .npy file (bad magic string)"));
    };
    let (len_bytes, after) = match rest {
        [1, _, a, b, after @ ..] => (u16::from_le_bytes([*a, *b]) as usize, after),
        [2 | 3, _, a, b, c, d, after @ ..] => (u32::from_le_bytes([*a, *b, *c, *d]) as usize, after),
        [major, minor, ..] => return Err(err(format!("unsupported .npy version {major}.{minor}"))),
        _ => return Err(err("truncated .npy preamble")),
    };
    if len_bytes > MAX_HEADER_LEN {
        return Err(err(format!("header of {len_bytes} bytes is longer than the {MAX_HEADER_LEN} allowed")));
    }
    if len_bytes > after.len() {
        return Err(err(format!("truncated header: {len_bytes} bytes claimed, {} present", after.len())));
    }
    let (text, data) = after.split_at(len_bytes);
    let text = std::str::from_utf8(text).map_err(|_| err("header is not UTF-8"))?;
    Ok((text, data))
}

/// Finds the `shape` tuple in the header text and returns its dims, without
/// trusting anything else in the header; an error when it is missing,
/// malformed, or its element count overflows.
fn pre_parse_shape(text: &str) -> Result<Vec<usize>, RuntimeError> {
    let mut depth = 0usize;
    for c in text.chars() {
        match c {
            '(' | '[' | '{' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(err("header is nested too deeply"));
                }
            }
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    let bad = || err(format!("malformed shape in header {:?}", text.trim_end()));
    let key = text.find("'shape'").or_else(|| text.find("\"shape\"")).ok_or_else(bad)?;
    let rest = text.get(key + 7..).ok_or_else(bad)?.trim_start();
    let rest = rest.strip_prefix(':').ok_or_else(bad)?.trim_start();
    let rest = rest.strip_prefix('(').ok_or_else(bad)?;
    let inside = &rest[..rest.find(')').ok_or_else(bad)?];
    let mut dims = Vec::new();
    for part in inside.split(',') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let part = part.strip_suffix('L').unwrap_or(part);
        let d: usize = part.parse().map_err(|_| bad())?;
        dims.push(d);
    }
    if crate::checked_numel(&dims).is_err() {
        return Err(err(format!("shape {dims:?} has too many elements")));
    }
    Ok(dims)
}

/// Parses an `.npy` file held in memory.
pub fn read(bytes: &[u8]) -> Result<Tensor, RuntimeError> {
    let (text, data) = split_header(bytes)?;
    let dims = pre_parse_shape(text)?;
    let npy = npyz::NpyFile::new(bytes).map_err(|e| err(format!("bad header: {e}")))?;
    let header = npy.header().clone();
    let rest = npy.into_inner();
    if rest.len() != data.len() || header.shape().iter().map(|&d| d as usize).ne(dims.iter().copied()) {
        return Err(err("inconsistent header"));
    }
    if header.order() != npyz::Order::C {
        return Err(err("Fortran-order arrays are not supported"));
    }
    let descr = header.dtype().descr();
    let dtype = match header.dtype() {
        npyz::DType::Plain(ts) => dtype_of(&ts.to_string()),
        _ => None,
    }
    .ok_or_else(|| {
        err(format!(
            "unsupported dtype {descr} (supported: |b1, <i4, <i8, <u4, |u1, <f4, <f8, <f2, and <V2 read as bf16)"
        ))
    })?;
    let n = crate::checked_numel(&dims)?;
    let need = n.checked_mul(dtype.size_in_bytes());
    if need != Some(data.len()) {
        let need = need.map_or_else(|| "too many".to_string(), |b| b.to_string());
        return Err(err(format!(
            "header claims shape {dims:?} of {} ({need} bytes), but the file holds {} data bytes",
            dtype.as_str(),
            data.len()
        )));
    }
    if dtype.is_half() {
        let bits = data.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]]));
        return match dtype {
            DType::BF16 => Tensor::from_vec(&dims, bits.map(half::bf16::from_bits).collect()),
            _ => Tensor::from_vec(&dims, bits.map(half::f16::from_bits).collect()),
        };
    }
    let file = npyz::NpyFile::with_header(header, data);
    fn decode<T: Element + npyz::Deserialize>(
        file: npyz::NpyFile<&[u8]>,
        dims: &[usize],
    ) -> Result<Tensor, RuntimeError> {
        let v: Vec<T> = file.into_vec().map_err(|e| err(format!("bad data: {e}")))?;
        Tensor::from_vec(dims, v)
    }
    match dtype {
        DType::Bool => decode::<bool>(file, &dims),
        DType::I32 => decode::<i32>(file, &dims),
        DType::I64 => decode::<i64>(file, &dims),
        DType::U32 => decode::<u32>(file, &dims),
        DType::U8 => decode::<u8>(file, &dims),
        DType::F32 => decode::<f32>(file, &dims),
        DType::F64 => decode::<f64>(file, &dims),
        DType::BF16 | DType::F16 => Err(err("internal error: half floats are decoded above")),
    }
}

/// Reads an `.npy` file.
pub fn read_file(path: &Path) -> Result<Tensor, RuntimeError> {
    let bytes = std::fs::read(path).map_err(|e| err(format!("cannot read {}: {e}", path.display())))?;
    read(&bytes).map_err(|e| err(format!("{}: {}", path.display(), e.message)))
}

/// Encodes `t` as an `.npy` file (C order, little-endian).
pub fn write(t: &Tensor) -> Result<Vec<u8>, RuntimeError> {
    fn encode<T: Element + npyz::Serialize>(v: &[T], t: &Tensor) -> Result<Vec<u8>, RuntimeError> {
        let ts: npyz::TypeStr =
            type_str(t.dtype()).parse().map_err(|e| err(format!("internal error: bad type string: {e}")))?;
        let shape: Vec<u64> = t.shape().iter().map(|&d| d as u64).collect();
        let mut buf = Vec::with_capacity(128 + t.nbytes());
        let io = |e: std::io::Error| err(format!("cannot encode {}: {e}", t.type_string()));
        let mut w = npyz::WriteOptions::new()
            .dtype(npyz::DType::Plain(ts))
            .shape(&shape)
            .writer(&mut buf)
            .begin_nd()
            .map_err(io)?;
        w.extend(v.iter().copied()).map_err(io)?;
        w.finish().map_err(io)?;
        Ok(buf)
    }
    match t.buffer() {
        crate::Buffer::Bool(v) => encode(v, t),
        crate::Buffer::I32(v) => encode(v, t),
        crate::Buffer::I64(v) => encode(v, t),
        crate::Buffer::U32(v) => encode(v, t),
        crate::Buffer::U8(v) => encode(v, t),
        crate::Buffer::F32(v) => encode(v, t),
        crate::Buffer::F64(v) => encode(v, t),
        crate::Buffer::BF16(v) => Ok(encode_raw(t, v.iter().flat_map(|x| x.to_bits().to_le_bytes()))),
        crate::Buffer::F16(v) => Ok(encode_raw(t, v.iter().flat_map(|x| x.to_bits().to_le_bytes()))),
    }
}

/// An `.npy` file (format 1.0, C order) of `t`'s type string, shape and the
/// little-endian element bytes `data`, laid out as NumPy writes it (the
/// header padded with spaces to a multiple of 64 bytes, ending in `\n`).
fn encode_raw(t: &Tensor, data: impl Iterator<Item = u8>) -> Vec<u8> {
    let shape = match t.shape() {
        [d] => format!("({d},)"),
        s => format!("({})", s.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
    };
    let mut header = format!("{{'descr': '{}', 'fortran_order': False, 'shape': {shape}, }}", type_str(t.dtype()));
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat(total.next_multiple_of(64) - total));
    header.push('\n');
    let mut buf = Vec::with_capacity(10 + header.len() + t.nbytes());
    buf.extend_from_slice(b"\x93NUMPY\x01\x00");
    buf.extend_from_slice(&(header.len() as u16).to_le_bytes());
    buf.extend_from_slice(header.as_bytes());
    buf.extend(data);
    buf
}

/// Writes `t` to an `.npy` file.
pub fn write_file(path: &Path, t: &Tensor) -> Result<(), RuntimeError> {
    let bytes = write(t)?;
    std::fs::write(path, bytes).map_err(|e| err(format!("cannot write {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An `.npy` v1 file with the given header dict and data.
    fn file(dict: &str, data: &[u8]) -> Vec<u8> {
        let mut h = dict.to_string();
        while (h.len() + 11) & 63 != 0 {
            h.push(' ');
        }
        h.push('\n');
        let mut b = b"\x93NUMPY\x01\x00".to_vec();
        b.extend_from_slice(&(h.len() as u16).to_le_bytes());
        b.extend_from_slice(h.as_bytes());
        b.extend_from_slice(data);
        b
    }

    #[test]
    fn round_trip_every_dtype() {
        let cases = [
            Tensor::from_vec(&[3], vec![true, false, true]).unwrap(),
            Tensor::from_vec(&[2, 2], vec![1i32, -2, i32::MAX, i32::MIN]).unwrap(),
            Tensor::from_vec(&[2], vec![i64::MIN, 7]).unwrap(),
            Tensor::from_vec(&[1, 3], vec![1.5f32, f32::INFINITY, -0.0]).unwrap(),
            Tensor::from_vec(&[2, 1, 2], vec![0.1f64, 2.0, -3.0, 1e300]).unwrap(),
            Tensor::scalar(42i32),
            Tensor::from_vec(&[3], vec![0u32, 1, u32::MAX]).unwrap(),
            Tensor::from_vec(&[2], vec![0u8, 255]).unwrap(),
            Tensor::from_vec(&[3], vec![half::f16::from_f32(1.5), half::f16::NEG_INFINITY, half::f16::from_bits(1)])
                .unwrap(),
            Tensor::from_vec(&[1, 2], vec![half::bf16::from_f32(-2.5), half::bf16::from_f32(1e30)]).unwrap(),
            Tensor::scalar(half::bf16::from_f32(3.0)),
            Tensor::zeros(DType::F32, &[0, 3]).unwrap(),
        ];
        for t in cases {
            let bytes = write(&t).unwrap();
            assert_eq!(&bytes[..6], b"\x93NUMPY");
            let back = read(&bytes).unwrap();
            assert_eq!(back.type_string(), t.type_string());
            assert!(back.all_close(&t, 0.0, 0.0), "{t}");
        }
        let nan = Tensor::from_vec(&[1], vec![f64::NAN]).unwrap();
        assert!(read(&write(&nan).unwrap()).unwrap().all_close(&nan, 0.0, 0.0));
    }

    #[test]
    fn reads_numpy_written_header() {
        let data: Vec<u8> = [1.0f32, 2.0].iter().flat_map(|x| x.to_le_bytes()).collect();
        let b = file("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", &data);
        let t = read(&b).unwrap();
        assert_eq!(t.to_string(), "f32[2] [1.0, 2.0]");
        let b = file("{'descr': '<i8', 'fortran_order': False, 'shape': (), }", &5i64.to_le_bytes());
        assert_eq!(read(&b).unwrap().to_string(), "i64 5");
    }

    #[test]
    fn rejects_bad_files() {
        let msg = |b: &[u8]| read(b).unwrap_err().message;
        let data = [0u8; 8];
        // Lying shapes: too few, too many, overflowing.
        let b = file("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", &data);
        assert!(msg(&b).contains("header claims shape [3] of f32 (12 bytes), but the file holds 8 data bytes"));
        let b = file("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }", &data);
        assert!(msg(&b).contains("claims"));
        let b = file("{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387904, 8), }", &data);
        assert!(msg(&b).contains("too many elements"));
        let b = file("{'descr': '<f8', 'fortran_order': False, 'shape': (2305843009213693952,), }", &data);
        assert!(msg(&b).contains("too many"));
        let b = file("{'descr': '<f4', 'fortran_order': False, 'shape': (-1,), }", &data);
        assert!(read(&b).is_err());
        // Unsupported layouts and dtypes.
        let b = file("{'descr': '<f4', 'fortran_order': True, 'shape': (2,), }", &data);
        assert!(msg(&b).contains("Fortran"));
        for d in ["'>f4'", "'>u4'", "'<u2'", "'|O'", "[('a', '<f4')]", "'<c8'"] {
            let b = file(&format!("{{'descr': {d}, 'fortran_order': False, 'shape': (2,), }}"), &data);
            assert!(read(&b).is_err(), "{d}");
        }
        // Truncation anywhere.
        let good = write(&Tensor::from_vec(&[2], vec![1i32, 2]).unwrap()).unwrap();
        for cut in 0..good.len() {
            assert!(read(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut long = good.clone();
        long.push(0);
        assert!(read(&long).is_err());
        // A header length beyond the file, and a huge one.
        let mut b = good.clone();
        b[8] = 0xff;
        b[9] = 0xff;
        assert!(read(&b).is_err());
        let mut b = b"\x93NUMPY\x02\x00\xff\xff\xff\xff".to_vec();
        b.extend_from_slice(&[b' '; 100]);
        assert!(msg(&b).contains("longer than"));
        assert!(msg(b"\x93NUMPY\x09\x00\x00\x00").contains("version"));
        assert!(msg(b"PK\x03\x04").contains("magic"));
        // Deep nesting and garbage headers.
        let deep = format!(
            "{{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': {}{}}}",
            "[".repeat(500),
            "]".repeat(500)
        );
        assert!(msg(&file(&deep, &data)).contains("nested"));
        assert!(read(&file("{'descr': '<f4', 'shape': (2,)}", &data)).is_err());
        assert!(read(&file("garbage", &data)).is_err());
        assert!(read(&file("{'descr': '<f4', 'fortran_order': False, 'shape': (2,}", &data)).is_err());
        // A bool byte other than 0 or 1.
        let b = file("{'descr': '|b1', 'fortran_order': False, 'shape': (1,), }", &[7]);
        assert!(read(&b).is_err());
    }

    #[test]
    fn file_round_trip() {
        let dir = std::env::temp_dir().join(format!("loopvm-npy-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("x.npy");
        let t = Tensor::from_vec(&[2, 2], vec![1.0f64, 2.0, 3.0, 4.0]).unwrap();
        write_file(&p, &t).unwrap();
        assert!(read_file(&p).unwrap().all_close(&t, 0.0, 0.0));
        assert!(read_file(&dir.join("missing.npy")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
