//! How deep a Parquet footer's schema nests, read from its Thrift bytes before the `parquet`
//! crate decodes them: the crate builds the schema by recursing once per level with no limit,
//! so a hostile footer of a few hundred kilobytes (a chain of one-child groups) would overflow
//! the stack and abort the whole process, which no error handling can catch.
//!
//! Thrift's compact protocol, just enough of it: FileMetaData's field 2 is the schema, a list of
//! SchemaElement structs whose field 5 is `num_children`; everything else is skipped.

/// Deeper than this is refused; real tables nest a handful of levels.
pub const MAX_SCHEMA_DEPTH: usize = 64;

/// Nested structs inside a skipped field (a logical type, say) deeper than this are refused too.
const MAX_SKIP_DEPTH: usize = 16;

/// How many groups the schema nests (the root group counts one), or why the bytes are not a footer
/// this reader can vouch for.
pub fn schema_depth(bytes: &[u8]) -> Result<usize, String> {
    let mut r = Reader { bytes, at: 0 };
    let mut last_id = 0i16;
    loop {
        let Some((id, kind)) = r.field_header(&mut last_id)? else {
            return Err("no schema in the footer".to_owned());
        };
        if id == 2 && kind == LIST {
            let (count, element) = r.list_header()?;
            if element != STRUCT {
                return Err("the schema is not a list of structs".to_owned());
            }
            return depth_of(&mut r, count);
        }
        r.skip(kind, 0)?;
    }
}

/// Walks `count` SchemaElements in depth-first order, keeping the children each open group
/// still waits for.
fn depth_of(r: &mut Reader<'_>, count: usize) -> Result<usize, String> {
    let mut open: Vec<i64> = Vec::new();
    let mut deepest = 0;
    for _ in 0..count {
        // This element fills one slot of the innermost group still waiting for children.
        while open.last() == Some(&0) {
            open.pop();
        }
        if let Some(waiting) = open.last_mut() {
            *waiting -= 1;
        }
        let children = r.element_children()?;
        if children > 0 {
            open.push(children);
            deepest = deepest.max(open.len());
            if open.len() > MAX_SCHEMA_DEPTH {
                return Err(format!(
                    "its schema nests more than {MAX_SCHEMA_DEPTH} levels deep"
                ));
            }
        }
    }
    Ok(deepest)
}

const BOOL_TRUE: u8 = 1;
const BOOL_FALSE: u8 = 2;
const BYTE: u8 = 3;
const I16: u8 = 4;
const I32: u8 = 5;
const I64: u8 = 6;
const DOUBLE: u8 = 7;
const BINARY: u8 = 8;
const LIST: u8 = 9;
const SET: u8 = 10;
const MAP: u8 = 11;
const STRUCT: u8 = 12;
const UUID: u8 = 13;

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, String> {
        let b = *self
            .bytes
            .get(self.at)
            .ok_or_else(|| "the footer ends early".to_owned())?;
        self.at += 1;
        Ok(b)
    }

    fn advance(&mut self, n: usize) -> Result<(), String> {
        match self.at.checked_add(n) {
            Some(end) if end <= self.bytes.len() => {
                self.at = end;
                Ok(())
            }
            _ => Err("the footer ends early".to_owned()),
        }
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("a number in the footer is too long".to_owned())
    }

    fn zigzag(&mut self) -> Result<i64, String> {
        let v = self.varint()?;
        Ok((v >> 1) as i64 ^ -((v & 1) as i64))
    }

    /// The next field's id and type, or None at the struct's end.
    fn field_header(&mut self, last_id: &mut i16) -> Result<Option<(i16, u8)>, String> {
        let b = self.byte()?;
        let kind = b & 0x0f;
        if kind == 0 {
            return Ok(None);
        }
        let delta = b >> 4;
        *last_id = if delta == 0 {
            i16::try_from(self.zigzag()?).map_err(|_| "a field id out of range".to_owned())?
        } else {
            last_id.saturating_add(i16::from(delta))
        };
        Ok(Some((*last_id, kind)))
    }

    fn list_header(&mut self) -> Result<(usize, u8), String> {
        let b = self.byte()?;
        let size = match b >> 4 {
            15 => self.varint()?,
            n => u64::from(n),
        };
        // Each element takes at least a byte: a larger count cannot be in the footer.
        let size = usize::try_from(size)
            .ok()
            .filter(|n| *n <= self.bytes.len())
            .ok_or_else(|| "a list longer than the footer".to_owned())?;
        Ok((size, b & 0x0f))
    }

    /// One SchemaElement: its `num_children` (0 when absent: a column).
    fn element_children(&mut self) -> Result<i64, String> {
        let mut last_id = 0i16;
        let mut children = 0;
        while let Some((id, kind)) = self.field_header(&mut last_id)? {
            if id == 5 && kind == I32 {
                children = self.zigzag()?.max(0);
            } else {
                self.skip(kind, 0)?;
            }
        }
        Ok(children)
    }

    /// Skips a value of type `kind`, refusing structs nested deeper than [`MAX_SKIP_DEPTH`].
    fn skip(&mut self, kind: u8, depth: usize) -> Result<(), String> {
        if depth > MAX_SKIP_DEPTH {
            return Err("the footer nests too deep".to_owned());
        }
        match kind {
            BOOL_TRUE | BOOL_FALSE => Ok(()),
            BYTE => self.advance(1),
            I16 | I32 | I64 => self.varint().map(|_| ()),
            DOUBLE => self.advance(8),
            UUID => self.advance(16),
            BINARY => {
                let n = usize::try_from(self.varint()?).map_err(|_| "a string too long")?;
                self.advance(n)
            }
            LIST | SET => {
                let (count, element) = self.list_header()?;
                for _ in 0..count {
                    match element {
                        // In a list a boolean takes a byte of its own.
                        BOOL_TRUE | BOOL_FALSE => self.advance(1)?,
                        _ => self.skip(element, depth + 1)?,
                    }
                }
                Ok(())
            }
            MAP => {
                let count = self.varint()?;
                if count == 0 {
                    return Ok(());
                }
                let types = self.byte()?;
                for _ in 0..count.min(self.bytes.len() as u64) {
                    self.skip(types >> 4, depth + 1)?;
                    self.skip(types & 0x0f, depth + 1)?;
                }
                Ok(())
            }
            STRUCT => {
                let mut last_id = 0i16;
                while let Some((_, field)) = self.field_header(&mut last_id)? {
                    self.skip(field, depth + 1)?;
                }
                Ok(())
            }
            other => Err(format!("an unknown value type {other} in the footer")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A FileMetaData holding only a schema of `elements` (each its num_children).
    fn footer(elements: &[i64]) -> Vec<u8> {
        let mut out = vec![0x15, 0x02]; // field 1 (version), i32 1
        out.push(0x19); // field 2, a list
        out.push(0xfc); // of 15+ structs: size follows
        let mut n = elements.len() as u64;
        loop {
            let b = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(b);
                break;
            }
            out.push(b | 0x80);
        }
        for &children in elements {
            out.extend([0x48, 0x01, b'c']); // field 4 (name), binary "c"
            if children > 0 {
                out.push(0x15); // field 5, i32
                let z = (children << 1) as u64;
                assert!(z < 128);
                out.push(z as u8);
            }
            out.push(0); // end of the element
        }
        out.push(0); // end of FileMetaData
        out
    }

    #[test]
    fn a_flat_schema_is_the_root_group_alone() {
        assert_eq!(schema_depth(&footer(&[3, 0, 0, 0])), Ok(1));
    }

    #[test]
    fn nested_groups_count_their_levels() {
        // root { a { b { x } }, y }
        assert_eq!(schema_depth(&footer(&[2, 1, 1, 0, 0])), Ok(3));
    }

    #[test]
    fn a_chain_of_a_hundred_thousand_one_child_groups_is_refused_without_recursing() {
        let mut chain = vec![1; 100_000];
        chain.push(0);
        let refused = schema_depth(&footer(&chain)).expect_err("too deep");
        assert!(refused.contains("nests more than 64"), "{refused}");
    }

    #[test]
    fn truncated_and_garbage_footers_are_errors_not_panics() {
        let whole = footer(&[2, 0, 0]);
        for end in 0..whole.len() {
            let _ = schema_depth(&whole[..end]);
        }
        for seed in 0..2_000u64 {
            let bytes: Vec<u8> = (0..64)
                .map(|i| (seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (i % 57)) as u8)
                .collect();
            let _ = schema_depth(&bytes);
        }
    }
}
