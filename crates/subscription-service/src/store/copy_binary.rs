//! Reading `COPY … TO STDOUT (FORMAT binary)`: how a billing run's records leave Postgres
//! without the per-row cost of the extended query protocol (row descriptions, type checks,
//! one decode per column through sqlx).
//!
//! The format: an 11-byte signature, a 32-bit flags word and a header extension; then per row
//! a 16-bit field count and each field as a 32-bit length (−1 for NULL) and its bytes; then a
//! field count of −1. Integers are big-endian.

use pricing::Decimal;

const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

/// Why COPY output could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("COPY binary output: {0}")]
pub struct CopyError(pub String);

fn bad<T>(m: impl Into<String>) -> Result<T, CopyError> {
    Err(CopyError(m.into()))
}

/// Splits COPY output, fed in chunks of any size, into rows of `N` fields.
#[derive(Debug, Default)]
pub struct CopyRows<const N: usize> {
    /// Bytes of a row (or the header) that a chunk ended in the middle of.
    pending: Vec<u8>,
    header_read: bool,
    ended: bool,
}

impl<const N: usize> CopyRows<N> {
    /// Calls `row` with the fields (`None` for NULL) of every row `chunk` completes.
    pub fn feed<E: From<CopyError>>(
        &mut self,
        chunk: &[u8],
        mut row: impl FnMut([Option<&[u8]>; N]) -> Result<(), E>,
    ) -> Result<(), E> {
        if self.pending.is_empty() {
            // The usual case (Postgres sends one row per message): no copy.
            let used = self.parse(chunk, &mut row)?;
            self.pending.extend_from_slice(&chunk[used..]);
        } else {
            let mut data = std::mem::take(&mut self.pending);
            data.extend_from_slice(chunk);
            let used = self.parse(&data, &mut row)?;
            data.drain(..used);
            self.pending = data;
        }
        Ok(())
    }

    /// Whether the trailer arrived and nothing is left over: the output was complete.
    pub fn finished(&self) -> bool {
        self.ended && self.pending.is_empty()
    }

    /// Parses the complete rows at the start of `data`; returns the bytes consumed.
    fn parse<E: From<CopyError>>(
        &mut self,
        data: &[u8],
        row: &mut impl FnMut([Option<&[u8]>; N]) -> Result<(), E>,
    ) -> Result<usize, E> {
        let mut at = 0;
        if !self.header_read {
            let Some(len) = header_len(data)? else {
                return Ok(0);
            };
            self.header_read = true;
            at = len;
        }
        while at < data.len() {
            if self.ended {
                return Err(CopyError("data after the trailer".into()).into());
            }
            let Some(count) = be_i16(data, at) else {
                break;
            };
            if count == -1 {
                self.ended = true;
                at += 2;
                continue;
            }
            if count as usize != N {
                return Err(CopyError(format!("{count} fields in a row, expected {N}")).into());
            }
            let mut fields = [None; N];
            let mut p = at + 2;
            let mut complete = true;
            for f in &mut fields {
                let Some(len) = be_i32(data, p) else {
                    complete = false;
                    break;
                };
                p += 4;
                if len == -1 {
                    continue;
                }
                let Ok(len) = usize::try_from(len) else {
                    return Err(CopyError(format!("field length {len}")).into());
                };
                let Some(bytes) = data.get(p..p + len) else {
                    complete = false;
                    break;
                };
                *f = Some(bytes);
                p += len;
            }
            if !complete {
                break;
            }
            row(fields)?;
            at = p;
        }
        Ok(at)
    }
}

/// The header's length, once `data` holds all of it.
fn header_len(data: &[u8]) -> Result<Option<usize>, CopyError> {
    let fixed = SIGNATURE.len() + 8;
    if data.len() < fixed {
        return Ok(None);
    }
    if &data[..SIGNATURE.len()] != SIGNATURE {
        return bad("no PGCOPY signature");
    }
    let ext = be_i32(data, SIGNATURE.len() + 4).unwrap_or(0);
    let Ok(ext) = usize::try_from(ext) else {
        return bad(format!("header extension length {ext}"));
    };
    Ok((data.len() >= fixed + ext).then_some(fixed + ext))
}

fn be_i16(data: &[u8], at: usize) -> Option<i16> {
    Some(i16::from_be_bytes(data.get(at..at + 2)?.try_into().ok()?))
}

fn be_i32(data: &[u8], at: usize) -> Option<i32> {
    Some(i32::from_be_bytes(data.get(at..at + 4)?.try_into().ok()?))
}

/// A `NOT NULL` field's bytes.
pub fn not_null(field: Option<&[u8]>) -> Result<&[u8], CopyError> {
    field.ok_or_else(|| CopyError("NULL in a NOT NULL column".into()))
}

/// A `text` field.
pub fn text(field: Option<&[u8]>) -> Result<&str, CopyError> {
    std::str::from_utf8(not_null(field)?).or_else(|_| bad("text that is not UTF-8"))
}

/// A `NOT NULL` `timestamptz` field: microseconds since 2000-01-01 UTC.
pub fn timestamp(field: Option<&[u8]>) -> Result<i64, CopyError> {
    let b = not_null(field)?;
    match <[u8; 8]>::try_from(b) {
        Ok(micros) => Ok(i64::from_be_bytes(micros)),
        Err(_) => bad(format!("timestamp of {} bytes", b.len())),
    }
}

/// A `numeric` field, exactly: base-10000 digits with a weight (the power of 10000 of the
/// first digit), a sign, and a display scale this ignores (the value is the same).
pub fn numeric(field: Option<&[u8]>) -> Result<Decimal, CopyError> {
    let Some(b) = field else {
        return bad("NULL in a NOT NULL numeric column");
    };
    let (Some(ndigits), Some(weight), Some(sign)) = (be_i16(b, 0), be_i16(b, 2), be_i16(b, 4))
    else {
        return bad("numeric shorter than its header");
    };
    let Ok(ndigits) = usize::try_from(ndigits) else {
        return bad(format!("numeric with {ndigits} digits"));
    };
    if b.len() != 8 + 2 * ndigits {
        return bad("numeric of the wrong length");
    }
    let negative = match sign as u16 {
        0x0000 => false,
        0x4000 => true,
        _ => return bad("numeric NaN or infinity"),
    };
    let overflow = || CopyError("numeric beyond 28 significant digits".into());
    let mut units: i128 = 0;
    for i in 0..ndigits {
        let d = be_i16(b, 8 + 2 * i).unwrap_or(0);
        if !(0..10_000).contains(&d) {
            return bad(format!("numeric digit {d}"));
        }
        units = units
            .checked_mul(10_000)
            .and_then(|u| u.checked_add(i128::from(d)))
            .ok_or_else(overflow)?;
    }
    // The last digit's power of 10000.
    let exponent = i32::from(weight) - (ndigits as i32 - 1);
    let mut scale = 0u32;
    if ndigits > 0 && exponent > 0 {
        let factor = 10_000i128
            .checked_pow(exponent as u32)
            .ok_or_else(overflow)?;
        units = units.checked_mul(factor).ok_or_else(overflow)?;
    } else if ndigits > 0 {
        scale = (-exponent) as u32 * 4;
    }
    // Postgres drops trailing zero digits, so this rarely loops; it keeps the scale in range.
    while scale > 28 && units % 10 == 0 {
        units /= 10;
        scale -= 1;
    }
    if negative {
        units = -units;
    }
    Decimal::try_from_i128_with_scale(units, scale).map_err(|_| overflow())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A numeric's binary form from its base-10000 digits.
    fn num(weight: i16, negative: bool, digits: &[i16]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend((digits.len() as i16).to_be_bytes());
        b.extend(weight.to_be_bytes());
        b.extend((if negative { 0x4000u16 } else { 0 }).to_be_bytes());
        b.extend(0i16.to_be_bytes());
        for d in digits {
            b.extend(d.to_be_bytes());
        }
        b
    }

    #[test]
    fn numerics_decode_exactly() {
        let d = |s: &str| s.parse::<Decimal>().unwrap();
        let cases = [
            (num(0, false, &[]), d("0")),
            (num(0, false, &[1, 5000]), d("1.5")),
            (num(1, false, &[1234, 5678, 9000]), d("12345678.9")),
            (num(1, false, &[2]), d("20000")),
            (num(3, false, &[1]), d("1000000000000")),
            (num(-1, true, &[1]), d("-0.0001")),
            (num(-3, false, &[1]), d("0.000000000001")),
            (
                num(2, false, &[9999, 9999, 9999, 9999, 9999, 9999]),
                d("999999999999.999999999999"),
            ),
        ];
        for (bytes, want) in cases {
            assert_eq!(numeric(Some(&bytes)).unwrap(), want, "{bytes:?}");
        }
        assert!(numeric(None).is_err());
        assert!(numeric(Some(&num(0, false, &[10_000]))).is_err());
        assert!(numeric(Some(&[0, 1, 0, 0])).is_err());
        let nan = [0u8, 0, 0, 0, 0xc0, 0, 0, 0];
        assert!(numeric(Some(&nan)).is_err());
        assert!(
            numeric(Some(&num(10, false, &[1]))).is_err(),
            "10^40 overflows"
        );
    }

    fn copy_output(rows: &[[Option<&str>; 2]]) -> Vec<u8> {
        let mut out = SIGNATURE.to_vec();
        out.extend(0i32.to_be_bytes());
        out.extend(4i32.to_be_bytes());
        out.extend(b"ext!");
        for r in rows {
            out.extend(2i16.to_be_bytes());
            for f in r {
                match f {
                    None => out.extend((-1i32).to_be_bytes()),
                    Some(s) => {
                        out.extend((s.len() as i32).to_be_bytes());
                        out.extend(s.as_bytes());
                    }
                }
            }
        }
        out.extend((-1i16).to_be_bytes());
        out
    }

    #[test]
    fn rows_come_out_whole_however_the_output_is_split() {
        let rows = [
            [Some("ten_a"), Some("")],
            [Some("ten_b"), None],
            [Some("ten_ü"), Some("usr_1")],
        ];
        let out = copy_output(&rows);
        for chunk in [1, 2, 3, 7, 16, out.len()] {
            let mut reader = CopyRows::<2>::default();
            let mut got: Vec<(String, Option<String>)> = Vec::new();
            for c in out.chunks(chunk) {
                reader
                    .feed::<CopyError>(c, |[a, b]| {
                        got.push((
                            text(a)?.to_string(),
                            b.map(|b| String::from_utf8(b.to_vec()).unwrap()),
                        ));
                        Ok(())
                    })
                    .unwrap();
            }
            assert!(reader.finished(), "chunks of {chunk}");
            let want: Vec<_> = rows
                .iter()
                .map(|[a, b]| (a.unwrap().to_string(), b.map(str::to_string)))
                .collect();
            assert_eq!(got, want, "chunks of {chunk}");
        }
        // Truncated output never reports finished; a wrong field count or signature is an error.
        let mut reader = CopyRows::<2>::default();
        reader
            .feed::<CopyError>(&out[..out.len() - 5], |_| Ok(()))
            .unwrap();
        assert!(!reader.finished());
        let mut reader = CopyRows::<3>::default();
        assert!(reader.feed::<CopyError>(&out, |_| Ok(())).is_err());
        let mut reader = CopyRows::<2>::default();
        assert!(
            reader
                .feed::<CopyError>(b"PGCOPY\nxx\r\n\0\0\0\0\0\0\0\0\0", |_| Ok(()))
                .is_err()
        );
    }
}
