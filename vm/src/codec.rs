//! Byte-level reading and writing of the module format: LEB128 varints and
//! length-prefixed sequences. The reader never panics and never allocates
//! more than the remaining input can justify.

use crate::error::DecodeError;

/// Appends encoded values to a byte vector.
#[derive(Default, Debug)]
pub struct Writer {
    /// The bytes written so far.
    pub bytes: Vec<u8>,
}

impl Writer {
    /// One byte.
    pub fn u8(&mut self, v: u8) {
        self.bytes.push(v);
    }
    /// An unsigned LEB128 varint.
    pub fn uleb(&mut self, mut v: u64) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                self.bytes.push(b);
                return;
            }
            self.bytes.push(b | 0x80);
        }
    }
    /// A signed LEB128 varint (zigzag).
    pub fn sleb(&mut self, v: i64) {
        self.uleb(((v << 1) ^ (v >> 63)) as u64);
    }
    /// A length-prefixed UTF-8 string.
    pub fn str(&mut self, s: &str) {
        self.uleb(s.len() as u64);
        self.bytes.extend_from_slice(s.as_bytes());
    }
    /// Raw bytes.
    pub fn raw(&mut self, b: &[u8]) {
        self.bytes.extend_from_slice(b);
    }
}

/// Reads encoded values from a byte slice, with bounds checks.
#[derive(Debug)]
pub struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes, pos: 0 }
    }
    /// The current offset.
    pub fn pos(&self) -> usize {
        self.pos
    }
    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }
    #[cold]
    fn err(&self, what: impl Into<String>) -> DecodeError {
        DecodeError { offset: self.pos, message: what.into() }
    }
    /// One byte.
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        let b = *self.bytes.get(self.pos).ok_or_else(|| self.err("unexpected end of bytecode"))?;
        self.pos += 1;
        Ok(b)
    }
    /// An unsigned LEB128 varint of at most 64 bits.
    pub fn uleb(&mut self) -> Result<u64, DecodeError> {
        let mut v: u64 = 0;
        let mut shift = 0u32;
        loop {
            let b = self.u8()?;
            if shift == 63 && b > 1 {
                return Err(self.err("varint overflows 64 bits"));
            }
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
            shift += 7;
            if shift > 63 {
                return Err(self.err("varint too long"));
            }
        }
    }
    /// A signed (zigzag) LEB128 varint.
    pub fn sleb(&mut self) -> Result<i64, DecodeError> {
        let u = self.uleb()?;
        Ok(((u >> 1) as i64) ^ -((u & 1) as i64))
    }
    /// A varint that must fit in `u32`.
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        let v = self.uleb()?;
        u32::try_from(v).map_err(|_| self.err(format!("value {v} does not fit in 32 bits")))
    }
    /// A sequence length: each element takes at least `min_elem_bytes`, so a
    /// length the remaining input cannot hold is rejected before allocating.
    pub fn len(&mut self, min_elem_bytes: usize) -> Result<usize, DecodeError> {
        let n = self.uleb()?;
        let max = (self.remaining() / min_elem_bytes.max(1)) as u64;
        if n > max {
            return Err(self.err(format!("length {n} exceeds the remaining {} bytes", self.remaining())));
        }
        Ok(n as usize)
    }
    /// `n` raw bytes.
    pub fn raw(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.remaining() {
            return Err(self.err(format!("need {n} bytes, {} remain", self.remaining())));
        }
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    /// A length-prefixed UTF-8 string.
    pub fn str(&mut self) -> Result<String, DecodeError> {
        let n = self.len(1)?;
        let b = self.raw(n)?;
        String::from_utf8(b.to_vec()).map_err(|_| self.err("string is not UTF-8"))
    }
}
