//! Parquet: columns and row count from the footer, decoded by the `parquet` crate (no Arrow, no
//! codecs: data pages are never read).
//!
//! A file ends with the footer's Thrift metadata, its length (4 bytes, little-endian) and
//! `PAR1`. Columns are the schema's top-level fields: what a data team calls the columns of a
//! table (pandas' and pyarrow's `schema.names`). A nested field is one column whose type spells
//! out its children (`struct<x: double, y: double>`, `list<string>`, `map<string, int64>`), so a
//! change inside it shows as that column retyped.

use parquet::basic::{ConvertedType, LogicalType, Repetition, TimeUnit, Type as Physical};
use parquet::file::metadata::{
    FooterTail, ParquetMetaDataOptions, ParquetMetaDataReader, ParquetStatisticsPolicy,
};
use parquet::schema::types::{BasicTypeInfo, Type};

use super::{clean_name, cut, Column, Table, TableError, TableLimits};

/// The footer's fixed tail: metadata length and magic.
const TAIL: usize = 8;

/// A type name is spelled out to at most this many bytes (a struct of thousands of fields would
/// otherwise make one huge string); differences past it do not show as a retype.
const TYPE_BYTES: usize = 4096;

/// Nested types deeper than this are written `…`: bounds the recursion on hostile schemas.
const MAX_DEPTH: usize = 32;

/// What a file's tail gave.
#[derive(Debug)]
pub(super) enum Tail {
    /// The footer was in it.
    Table(Table),
    /// The footer is longer: read the file's last this many bytes.
    Need(u64),
}

/// Decodes the footer from the last bytes of a file (`whole`: they are the whole file).
pub(super) fn from_tail(tail: &[u8], whole: bool, limits: TableLimits) -> Result<Tail, TableError> {
    let Some(at) = tail.len().checked_sub(TAIL) else {
        return Err(TableError::NotParquet(format!(
            "{} bytes, shorter than a Parquet footer",
            tail.len()
        )));
    };
    let mut last = [0_u8; TAIL];
    last.copy_from_slice(&tail[at..]);
    let footer = FooterTail::try_new(&last)
        .map_err(|_| TableError::NotParquet("no PAR1 at its end".to_owned()))?;
    if footer.is_encrypted_footer() {
        return Err(TableError::Encrypted);
    }
    let length = footer.metadata_length() as u64;
    if length > limits.max_footer_bytes {
        return Err(TableError::FooterTooLarge {
            bytes: length,
            limit: limits.max_footer_bytes,
        });
    }
    let needed = length + TAIL as u64;
    if needed > tail.len() as u64 {
        if whole {
            return Err(TableError::CorruptFooter(format!(
                "its length ({length} bytes) is more than the file holds"
            )));
        }
        return Ok(Tail::Need(needed));
    }
    // `needed <= tail.len()`, so this fits in usize and does not underflow.
    let start = tail.len() - needed as usize;
    decode(&tail[start..at]).map(Tail::Table)
}

/// The table the footer's metadata describes.
fn decode(metadata: &[u8]) -> Result<Table, TableError> {
    // Before the crate, which recurses once per schema level without a limit.
    super::depth::schema_depth(metadata).map_err(TableError::CorruptFooter)?;
    // Statistics are never shown: skipping them saves most of the work on wide files.
    let options = ParquetMetaDataOptions::new()
        .with_encoding_stats_policy(ParquetStatisticsPolicy::SkipAll)
        .with_column_stats_policy(ParquetStatisticsPolicy::SkipAll)
        .with_size_stats_policy(ParquetStatisticsPolicy::SkipAll);
    let decoded = ParquetMetaDataReader::decode_metadata_with_options(metadata, Some(&options))
        .map_err(|e| TableError::CorruptFooter(cut(&e.to_string(), 200)))?;
    let file = decoded.file_metadata();
    let rows = u64::try_from(file.num_rows()).map_err(|_| {
        TableError::CorruptFooter(format!("a negative row count ({})", file.num_rows()))
    })?;
    let root = file.schema_descr().root_schema();
    let fields: &[_] = match root {
        Type::GroupType { fields, .. } => fields,
        Type::PrimitiveType { .. } => &[],
    };
    let columns = fields
        .iter()
        .map(|field| Column {
            name: clean_name(field.name()),
            data_type: Some(type_name(field)),
        })
        .collect();
    Ok(Table {
        columns,
        rows: Some(rows),
    })
}

/// A field's type name, bounded in length.
fn type_name(field: &Type) -> String {
    let mut name = String::new();
    write_field(&mut name, field, 0);
    if name.len() > TYPE_BYTES {
        let mut end = TYPE_BYTES;
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        name.truncate(end);
        name.push('…');
    }
    name
}

/// A field's type: `list<…>` around it when the field itself repeats (the legacy way to write
/// a list, without a LIST annotation).
fn write_field(out: &mut String, field: &Type, depth: usize) {
    let repeated = field.get_basic_info().has_repetition()
        && field.get_basic_info().repetition() == Repetition::REPEATED;
    if repeated {
        out.push_str("list<");
        write_type(out, field, depth + 1);
        out.push('>');
    } else {
        write_type(out, field, depth);
    }
}

/// A type's name, ignoring its own repetition.
fn write_type(out: &mut String, field: &Type, depth: usize) {
    if depth > MAX_DEPTH || out.len() > TYPE_BYTES {
        out.push('…');
        return;
    }
    match field {
        Type::PrimitiveType {
            basic_info,
            physical_type,
            type_length,
            scale,
            precision,
        } => out.push_str(&primitive_name(
            basic_info,
            *physical_type,
            *type_length,
            *precision,
            *scale,
        )),
        Type::GroupType { basic_info, fields } => write_group(out, basic_info, fields, depth),
    }
}

fn write_group(
    out: &mut String,
    info: &BasicTypeInfo,
    fields: &[parquet::schema::types::TypePtr],
    depth: usize,
) {
    let logical = info.logical_type_ref();
    let converted = info.converted_type();
    let is_list = matches!(logical, Some(LogicalType::List)) || converted == ConvertedType::LIST;
    let is_map = matches!(logical, Some(LogicalType::Map))
        || matches!(converted, ConvertedType::MAP | ConvertedType::MAP_KEY_VALUE);
    if let (true, [repeated]) = (is_list, fields) {
        // group (LIST) { repeated group list { element } }: the element is the one child of
        // the repeated group; in the legacy forms the repeated field is the element itself.
        out.push_str("list<");
        match &**repeated {
            Type::GroupType { fields: inner, .. } if inner.len() == 1 => {
                write_field(out, &inner[0], depth + 1);
            }
            other => write_type(out, other, depth + 1),
        }
        out.push('>');
        return;
    }
    if let (true, [key_value]) = (is_map, fields) {
        if let Type::GroupType { fields: kv, .. } = &**key_value {
            if let [key, value] = kv.as_slice() {
                out.push_str("map<");
                write_field(out, key, depth + 1);
                out.push_str(", ");
                write_field(out, value, depth + 1);
                out.push('>');
                return;
            }
        }
    }
    out.push_str("struct<");
    for (i, child) in fields.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        if out.len() > TYPE_BYTES {
            out.push('…');
            break;
        }
        out.push_str(&clean_name(child.name()));
        out.push_str(": ");
        write_field(out, child, depth + 1);
    }
    out.push('>');
}

/// A leaf's type: the logical type where there is one (or the legacy converted type), else the
/// physical type, lower case.
fn primitive_name(
    info: &BasicTypeInfo,
    physical: Physical,
    length: i32,
    precision: i32,
    scale: i32,
) -> String {
    if let Some(logical) = info.logical_type_ref() {
        if let Some(name) = logical_name(logical) {
            return name;
        }
    }
    if let Some(name) = converted_name(info.converted_type(), precision, scale) {
        return name;
    }
    physical_name(physical, length)
}

fn unit(unit: &TimeUnit) -> &'static str {
    match unit {
        TimeUnit::MILLIS => "ms",
        TimeUnit::MICROS => "us",
        TimeUnit::NANOS => "ns",
    }
}

fn logical_name(logical: &LogicalType) -> Option<String> {
    Some(match logical {
        LogicalType::String => "string".to_owned(),
        LogicalType::Map => "map".to_owned(),
        LogicalType::List => "list".to_owned(),
        LogicalType::Enum => "enum".to_owned(),
        LogicalType::Decimal(d) => format!("decimal({},{})", d.precision, d.scale),
        LogicalType::Date => "date".to_owned(),
        LogicalType::Time(t) => timed("time", &t.unit, t.is_adjusted_to_u_t_c),
        LogicalType::Timestamp(t) => timed("timestamp", &t.unit, t.is_adjusted_to_u_t_c),
        LogicalType::Integer(i) => {
            format!("{}int{}", if i.is_signed { "" } else { "u" }, i.bit_width)
        }
        LogicalType::Unknown => "null".to_owned(),
        LogicalType::Json => "json".to_owned(),
        LogicalType::Bson => "bson".to_owned(),
        LogicalType::Uuid => "uuid".to_owned(),
        LogicalType::Float16 => "float16".to_owned(),
        LogicalType::Variant(_) => "variant".to_owned(),
        LogicalType::Geometry(_) => "geometry".to_owned(),
        LogicalType::Geography(_) => "geography".to_owned(),
        LogicalType::File => "file".to_owned(),
        // A logical type newer than this reader: its physical type says what it can.
        LogicalType::_Unknown { .. } => return None,
    })
}

/// `timestamp(us)`, or `timestamp(us, utc)` when adjusted to UTC.
fn timed(kind: &str, time_unit: &TimeUnit, utc: bool) -> String {
    if utc {
        format!("{kind}({}, utc)", unit(time_unit))
    } else {
        format!("{kind}({})", unit(time_unit))
    }
}

/// The legacy converted types, for files written before logical types (a TIMESTAMP_* one is
/// adjusted to UTC by definition).
fn converted_name(converted: ConvertedType, precision: i32, scale: i32) -> Option<String> {
    Some(
        match converted {
            ConvertedType::UTF8 => "string",
            ConvertedType::ENUM => "enum",
            ConvertedType::DECIMAL => return Some(format!("decimal({precision},{scale})")),
            ConvertedType::DATE => "date",
            ConvertedType::TIME_MILLIS => "time(ms, utc)",
            ConvertedType::TIME_MICROS => "time(us, utc)",
            ConvertedType::TIMESTAMP_MILLIS => "timestamp(ms, utc)",
            ConvertedType::TIMESTAMP_MICROS => "timestamp(us, utc)",
            ConvertedType::UINT_8 => "uint8",
            ConvertedType::UINT_16 => "uint16",
            ConvertedType::UINT_32 => "uint32",
            ConvertedType::UINT_64 => "uint64",
            ConvertedType::INT_8 => "int8",
            ConvertedType::INT_16 => "int16",
            ConvertedType::INT_32 => "int32",
            ConvertedType::INT_64 => "int64",
            ConvertedType::JSON => "json",
            ConvertedType::BSON => "bson",
            ConvertedType::INTERVAL => "interval",
            // NONE, and group annotations on a leaf (invalid): the physical type.
            _ => return None,
        }
        .to_owned(),
    )
}

fn physical_name(physical: Physical, length: i32) -> String {
    match physical {
        Physical::BOOLEAN => "boolean".to_owned(),
        Physical::INT32 => "int32".to_owned(),
        Physical::INT64 => "int64".to_owned(),
        Physical::INT96 => "int96".to_owned(),
        Physical::FLOAT => "float".to_owned(),
        Physical::DOUBLE => "double".to_owned(),
        Physical::BYTE_ARRAY => "byte_array".to_owned(),
        Physical::FIXED_LEN_BYTE_ARRAY => format!("fixed_len_byte_array({length})"),
    }
}
