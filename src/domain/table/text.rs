//! CSV and TSV: the header line, parsed by the `csv` crate (quoted names, escaped quotes and
//! quoted line breaks handled), and the records counted when the whole file was read. A `.gz`
//! file is inflated only as far as that needs (`flate2`).

use std::borrow::Cow;
use std::io::Read;

use csv::{ByteRecord, ReaderBuilder};
use flate2::read::MultiGzDecoder;

use super::{clean_name, Column, Table, TableError, HEADER_BYTES, INFLATED_ROW_COUNT_BYTES};

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Describes a CSV/TSV from its first bytes (`whole`: they are the whole file, and its
/// records are counted).
pub(super) fn describe(
    bytes: &[u8],
    delimiter: u8,
    gzip: bool,
    whole: bool,
) -> Result<Table, TableError> {
    let header_limit = HEADER_BYTES as usize;
    // `cut`: there is more of the file after `head`, so the header line must end inside it.
    let (head, cut): (Cow<'_, [u8]>, bool) = if gzip {
        let (head, cut) = inflate_head(bytes, header_limit, whole)?;
        (Cow::Owned(head), cut)
    } else {
        let end = bytes.len().min(header_limit);
        (
            Cow::Borrowed(&bytes[..end]),
            !whole || bytes.len() > header_limit,
        )
    };
    let columns = header(&head, delimiter, cut)?;
    let rows = if whole {
        if gzip {
            count_records(MultiGzDecoder::new(bytes), delimiter)
        } else {
            count_records(bytes, delimiter)
        }
    } else {
        None
    };
    Ok(Table { columns, rows })
}

/// The first `limit` inflated bytes, and whether more follow (or may: a stream cut short
/// because only its start was read).
fn inflate_head(bytes: &[u8], limit: usize, whole: bool) -> Result<(Vec<u8>, bool), TableError> {
    let mut head = Vec::with_capacity(limit.min(bytes.len().saturating_mul(4)) + 1);
    let read = MultiGzDecoder::new(bytes)
        .take(limit as u64 + 1)
        .read_to_end(&mut head);
    match read {
        Ok(_) => {
            let more = head.len() > limit;
            head.truncate(limit);
            Ok((head, more))
        }
        // The start of a longer stream ends mid-way: what came out is the head.
        Err(_) if !whole && !head.is_empty() => {
            head.truncate(limit);
            Ok((head, true))
        }
        Err(e) => Err(TableError::Gzip(e.to_string())),
    }
}

/// The names in the header line of `head`.
fn header(head: &[u8], delimiter: u8, cut: bool) -> Result<Vec<Column>, TableError> {
    let head = head.strip_prefix(BOM).unwrap_or(head);
    let mut reader = ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(false)
        .flexible(true)
        .from_reader(head);
    let mut record = ByteRecord::new();
    // Reading from a slice cannot fail: only the reader's I/O errors (none) and unequal
    // lengths (flexible) are errors.
    let found = reader
        .read_byte_record(&mut record)
        .map_err(|e| TableError::NotText(e.to_string()))?;
    if !found {
        return Ok(Vec::new());
    }
    let end = usize::try_from(reader.position().byte()).unwrap_or(usize::MAX);
    let consumed = &head[..end.min(head.len())];
    if consumed.contains(&0) {
        return Err(TableError::NotText(
            "its first line holds NUL bytes".to_owned(),
        ));
    }
    // The record ran to the end of what was read without a line break: the line goes on.
    let terminated = end < head.len() || matches!(consumed.last(), Some(b'\n' | b'\r'));
    if cut && !terminated {
        return Err(TableError::HeaderTooLong);
    }
    record
        .iter()
        .map(|field| match std::str::from_utf8(field) {
            Ok(name) => Ok(Column {
                name: clean_name(name),
                data_type: None,
            }),
            Err(_) => Err(TableError::NotText("its header is not UTF-8".to_owned())),
        })
        .collect()
}

/// The records after the header, or none when the input fails to read or inflates past
/// [`INFLATED_ROW_COUNT_BYTES`].
///
/// Counted by `csv-core`'s parser into fixed scratch buffers, not into a record: a file of one
/// 64 MiB line (inflated from a 1 MiB `.gz`) costs its parse, never a 64 MiB allocation.
fn count_records(input: impl Read, delimiter: u8) -> Option<u64> {
    let mut input = input.take(INFLATED_ROW_COUNT_BYTES + 1);
    let mut parser = csv_core::ReaderBuilder::new().delimiter(delimiter).build();
    let mut chunk = vec![0_u8; 64 * 1024];
    // Field bytes and ends are not kept: the parser only needs somewhere to write them.
    let mut fields = [0_u8; 1024];
    let mut ends = [0_usize; 64];
    let mut records: u64 = 0;
    loop {
        let read = input.read(&mut chunk).ok()?;
        let mut rest = &chunk[..read];
        // An empty slice tells the parser the input has ended: give it one only at the end.
        while !rest.is_empty() || read == 0 {
            let (result, consumed, _, _) = parser.read_record(rest, &mut fields, &mut ends);
            rest = &rest[consumed..];
            match result {
                csv_core::ReadRecordResult::Record => records += 1,
                csv_core::ReadRecordResult::End => {
                    if input.limit() == 0 {
                        return None;
                    }
                    // The header is no row.
                    return Some(records.saturating_sub(1));
                }
                csv_core::ReadRecordResult::InputEmpty
                | csv_core::ReadRecordResult::OutputFull
                | csv_core::ReadRecordResult::OutputEndsFull => {}
            }
        }
    }
}
