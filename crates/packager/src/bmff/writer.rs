//! Writing boxes: a 32-bit size, a four-character type, the payload (ISO/IEC
//! 14496-12 4.2). Sizes are patched in when a box closes.

use bytes::{BufMut, Bytes, BytesMut};

#[derive(Debug, Default)]
pub struct BoxWriter {
    buf: BytesMut,
    open: Vec<usize>,
}

impl BoxWriter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Opens a box; its size is written by [`BoxWriter::end`].
    pub fn begin(&mut self, fourcc: &[u8; 4]) -> &mut Self {
        self.open.push(self.buf.len());
        self.buf.put_u32(0);
        self.buf.put_slice(fourcc);
        self
    }

    /// Opens a full box (4.2: version and 24-bit flags).
    pub fn begin_full(&mut self, fourcc: &[u8; 4], version: u8, flags: u32) -> &mut Self {
        self.begin(fourcc);
        self.buf.put_u32((u32::from(version) << 24) | (flags & 0x00ff_ffff));
        self
    }

    /// Opens a `uuid` box with an extended type (4.2), as a full box.
    pub fn begin_uuid(&mut self, uuid: &[u8; 16], version: u8, flags: u32) -> &mut Self {
        self.begin(b"uuid");
        self.buf.put_slice(uuid);
        self.buf.put_u32((u32::from(version) << 24) | (flags & 0x00ff_ffff));
        self
    }

    /// Closes the innermost open box, writing its size.
    pub fn end(&mut self) -> &mut Self {
        if let Some(start) = self.open.pop() {
            let size = (self.buf.len() - start) as u32;
            self.buf[start..start + 4].copy_from_slice(&size.to_be_bytes());
        }
        self
    }

    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.put_u8(v);
        self
    }
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.buf.put_u16(v);
        self
    }
    pub fn u24(&mut self, v: u32) -> &mut Self {
        self.buf.put_slice(&v.to_be_bytes()[1..]);
        self
    }
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.put_u32(v);
        self
    }
    pub fn i32(&mut self, v: i32) -> &mut Self {
        self.buf.put_i32(v);
        self
    }
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.put_u64(v);
        self
    }
    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.buf.put_slice(v);
        self
    }
    pub fn zeros(&mut self, n: usize) -> &mut Self {
        self.buf.put_bytes(0, n);
        self
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Overwrites a big-endian u32 at `at` (for offsets known late).
    pub fn patch_u32(&mut self, at: usize, v: u32) {
        if let Some(slot) = self.buf.get_mut(at..at + 4) {
            slot.copy_from_slice(&v.to_be_bytes());
        }
    }

    pub fn finish(mut self) -> Bytes {
        while !self.open.is_empty() {
            self.end();
        }
        self.buf.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_sizes() {
        let mut w = BoxWriter::new();
        w.begin(b"moof").begin_full(b"mfhd", 0, 0).u32(7).end().end();
        let b = w.finish();
        assert_eq!(
            b.as_ref(),
            &[
                0, 0, 0, 24, b'm', b'o', b'o', b'f', // moof, 24 bytes
                0, 0, 0, 16, b'm', b'f', b'h', b'd', // mfhd, 16 bytes
                0, 0, 0, 0, // version 0, flags 0
                0, 0, 0, 7, // sequence_number
            ]
        );
    }
}
