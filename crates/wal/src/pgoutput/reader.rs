//! A bounds-checked big-endian cursor over one pgoutput message.

use super::DecodeError;
use outboxd_core::Lsn;

pub(super) struct ByteReader<'a> {
    buf: &'a [u8],
    pos: usize,
    message: &'static str,
}

impl<'a> ByteReader<'a> {
    pub(super) fn new(buf: &'a [u8], pos: usize, message: &'static str) -> Self {
        ByteReader { buf, pos, message }
    }

    pub(super) fn message(&self) -> &'static str {
        self.message
    }

    pub(super) fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    pub(super) fn bytes(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).filter(|&end| end <= self.buf.len());
        let Some(end) = end else {
            return Err(DecodeError::Truncated {
                message: self.message,
                field,
                needed: n,
                offset: self.pos,
                remaining: self.remaining(),
            });
        };
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(N, field)?);
        Ok(out)
    }

    pub(super) fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(field)?[0])
    }

    pub(super) fn i32(&mut self, field: &'static str) -> Result<i32, DecodeError> {
        Ok(i32::from_be_bytes(self.array(field)?))
    }

    pub(super) fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    pub(super) fn i64(&mut self, field: &'static str) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(self.array(field)?))
    }

    pub(super) fn lsn(&mut self, field: &'static str) -> Result<Lsn, DecodeError> {
        Ok(Lsn(u64::from_be_bytes(self.array(field)?)))
    }

    /// An Int16 count that must not be negative.
    pub(super) fn count_i16(&mut self, field: &'static str) -> Result<usize, DecodeError> {
        let v = i16::from_be_bytes(self.array(field)?);
        usize::try_from(v).map_err(|_| self.negative(field, v.into()))
    }

    /// An Int32 count or length that must not be negative.
    pub(super) fn count_i32(&mut self, field: &'static str) -> Result<usize, DecodeError> {
        let v = self.i32(field)?;
        usize::try_from(v).map_err(|_| self.negative(field, v.into()))
    }

    fn negative(&self, field: &'static str, value: i64) -> DecodeError {
        DecodeError::NegativeLength {
            message: self.message,
            field,
            value,
        }
    }

    /// A NUL-terminated UTF-8 string.
    pub(super) fn string(&mut self, field: &'static str) -> Result<&'a str, DecodeError> {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        let len = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or(DecodeError::Unterminated {
                message: self.message,
                field,
            })?;
        let s = std::str::from_utf8(&rest[..len]).map_err(|_| DecodeError::InvalidUtf8 {
            message: self.message,
            field,
        })?;
        self.pos += len + 1;
        Ok(s)
    }

    pub(super) fn expect(
        &mut self,
        wanted: u8,
        field: &'static str,
        expected: &'static str,
    ) -> Result<(), DecodeError> {
        match self.u8(field)? {
            b if b == wanted => Ok(()),
            found => Err(DecodeError::UnexpectedByte {
                message: self.message,
                field,
                expected,
                found,
            }),
        }
    }

    /// Fails when bytes remain after the last field.
    pub(super) fn finish(&self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            count => Err(DecodeError::TrailingBytes {
                message: self.message,
                count,
            }),
        }
    }
}
