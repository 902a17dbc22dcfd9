use serde_json::Value;

use super::*;

const FIRST: &str = include_str!("../../../tests/data/quilt/first.jsonl");
const WORKFLOW: &str = include_str!("../../../tests/data/quilt/workflow.jsonl");
const UNICODE: &str = include_str!("../../../tests/data/quilt/unicode_nested.jsonl");

fn read(text: &str) -> ManifestSummary {
    ManifestReader::read_str(ManifestLimits::default(), text)
}

const HEADER: &str = r#"{"version": "v0", "message": "m", "user_meta": {"a": 1}}"#;

fn entry(key: &str, size: u64) -> String {
    serde_json::json!({
        "logical_key": key,
        "physical_keys": [format!("s3://b/{key}")],
        "size": size,
        "hash": {"type": "sha2-256-chunked", "value": "be5m2dvcqgcLtgo/H6TDCJQshHJhEFstBs2aKdZ8XF4="},
        "meta": {},
    })
    .to_string()
}

fn manifest(entries: &[(&str, u64)]) -> String {
    let mut lines = vec![HEADER.to_owned()];
    lines.extend(entries.iter().map(|(k, s)| entry(k, *s)));
    lines.join("\n")
}

#[test]
fn a_real_quilt3_manifest_becomes_the_package_object() {
    let summary = read(FIRST);
    assert_eq!(summary.error(), None);
    assert_eq!(
        summary.package_json(None),
        serde_json::json!({
            "message": "First revision",
            "user_meta": {"stage": "dev", "owner": "data-team", "tags": ["raw"]},
            "workflow": null,
            "files": 5,
            "bytes": 52 + 22 + 19 + 26 + 10,
            "top_level": [
                {"name": ROOT_FOLDER, "files": 2, "bytes": 62},
                {"name": "data", "files": 2, "bytes": 41},
                {"name": "docs", "files": 1, "bytes": 26},
            ],
            "readme_key": "s3://quilt-notify-fixtures/team/demo/README.md",
            "readme": null,
            "error": null,
        })
    );
}

#[test]
fn the_workflow_is_id_and_config() {
    let summary = read(WORKFLOW);
    assert_eq!(
        summary.package_json(None)["workflow"],
        serde_json::json!({"id": "release", "config": "s3://quilt-notify-fixtures/.quilt/workflows/config.yml"})
    );
}

#[test]
fn unicode_and_nested_keys_group_by_their_first_segment() {
    let summary = read(UNICODE);
    assert_eq!(summary.error(), None);
    let names: Vec<&str> = summary
        .top_level()
        .iter()
        .map(|f| f.name.as_str())
        .collect();
    for expected in ["données", "日本語", "a", "with space", "data", ""] {
        assert!(names.contains(&expected), "{expected} in {names:?}");
    }
    assert!(summary
        .entries()
        .iter()
        .any(|e| &*e.logical_key == "données/été/résumé.csv"));
}

#[test]
fn quilt3_hashes_are_kept_as_32_bytes() {
    let summary = read(FIRST);
    assert!(summary
        .entries()
        .iter()
        .all(|e| matches!(e.hash, ContentHash::Sha256Chunked(_))));
}

#[test]
fn missing_and_null_header_fields_have_defaults() {
    let summary = read("{}\n");
    assert_eq!(summary.error(), None);
    let package = summary.package_json(None);
    assert_eq!(package["message"], Value::Null);
    assert_eq!(package["user_meta"], serde_json::json!({}));
    assert_eq!(package["workflow"], Value::Null);
    assert_eq!(package["files"], 0);
    assert_eq!(package["top_level"], serde_json::json!([]));
    let nulls = read(r#"{"version": null, "message": null, "user_meta": null, "workflow": null}"#);
    assert_eq!(nulls.error(), None);
    assert_eq!(nulls.package_json(None)["user_meta"], serde_json::json!({}));
}

#[test]
fn top_level_is_largest_first_ties_by_name_at_most_ten() {
    let mut files: Vec<(String, u64)> = (0..12).map(|i| (format!("f{i:02}/x"), 5)).collect();
    files.push(("big/a".into(), 7));
    files.push(("big/b".into(), 7));
    files.push(("root.txt".into(), 6));
    let borrowed: Vec<(&str, u64)> = files.iter().map(|(k, s)| (k.as_str(), *s)).collect();
    let summary = read(&manifest(&borrowed));
    let top: Vec<(&str, u64, u64)> = summary
        .top_level()
        .iter()
        .map(|f| (f.name.as_str(), f.files, f.bytes))
        .collect();
    assert_eq!(top.len(), TOP_LEVEL_LIMIT);
    assert_eq!(top[0], ("big", 2, 14));
    assert_eq!(top[1], (ROOT_FOLDER, 1, 6));
    assert_eq!(top[2], ("f00", 1, 5));
    assert_eq!(top[9], ("f07", 1, 5));
    assert_eq!(summary.files(), 15);
    assert_eq!(summary.bytes(), 12 * 5 + 14 + 6);
}

#[test]
fn the_readme_is_the_one_at_the_root() {
    let summary = read(&manifest(&[("docs/README.md", 1), ("x", 1)]));
    assert_eq!(summary.readme_key(), None);
    assert_eq!(read(FIRST).package_json(Some("# Hi"))["readme"], "# Hi");
}

#[test]
fn readme_excerpts_stop_at_1000_characters_on_a_char_boundary() {
    let text = "é".repeat(1500);
    let excerpt = readme_excerpt(&text);
    assert_eq!(excerpt.chars().count(), README_CHARS);
    assert_eq!(excerpt.len(), 2 * README_CHARS);
    assert_eq!(readme_excerpt("short"), "short");
    let package = read(FIRST).package_json(Some(&text));
    assert_eq!(
        package["readme"].as_str().map(|s| s.chars().count()),
        Some(1000)
    );
}

#[test]
fn entries_are_sorted_in_byte_order_whatever_the_line_order() {
    let summary = read(&manifest(&[("b", 1), ("a/z", 1), ("a.b", 1), ("B", 1)]));
    let keys: Vec<&str> = summary.entries().iter().map(|e| &*e.logical_key).collect();
    assert_eq!(keys, ["B", "a.b", "a/z", "b"]);
}

#[test]
fn a_duplicate_key_keeps_the_first_and_is_an_error() {
    let summary = read(&manifest(&[("a", 1), ("a", 2), ("b", 3)]));
    assert_eq!(
        summary.error(),
        Some(&ManifestError::DuplicateKey("a".into()))
    );
    assert_eq!(summary.files(), 2);
    assert_eq!(summary.bytes(), 4);
}

#[test]
fn an_empty_manifest_is_an_error() {
    assert_eq!(read("").error(), Some(&ManifestError::Empty));
    assert_eq!(read("\n \r\n").error(), Some(&ManifestError::Empty));
}

#[test]
fn a_line_over_the_limit_stops_the_reader_and_keeps_what_was_read() {
    let limits = ManifestLimits {
        max_line_bytes: 300,
        max_entries: 10,
    };
    let mut reader = ManifestReader::new(limits);
    reader.feed_line(HEADER.as_bytes()).expect("header");
    reader.feed_line(entry("a", 3).as_bytes()).expect("entry");
    let long = entry(&"x".repeat(300), 1);
    let error = reader.feed_line(long.as_bytes()).expect_err("too long");
    assert_eq!(
        error,
        ManifestError::LineTooLong {
            line: 3,
            bytes: long.len() as u64,
            limit: 300
        }
    );
    // Stopped: later lines are refused with the same error.
    assert_eq!(
        reader.feed_line(entry("b", 1).as_bytes()),
        Err(error.clone())
    );
    let summary = reader.finish();
    assert_eq!(summary.files(), 1);
    assert_eq!(summary.message(), Some("m"));
    let package = summary.package_json(None);
    assert_eq!(
        package["error"],
        format!(
            "line 3 is {} bytes long, over the limit of 300 bytes",
            long.len()
        )
    );
}

#[test]
fn a_splitter_can_report_its_own_long_line_or_a_broken_stream() {
    let mut reader = ManifestReader::new(ManifestLimits::default());
    reader.feed_line(HEADER.as_bytes()).expect("header");
    let line = reader.next_line();
    reader.fail(ManifestError::LineTooLong {
        line,
        bytes: 2 << 20,
        limit: 1 << 20,
    });
    reader.fail(ManifestError::Interrupted("later".into()));
    let summary = reader.finish();
    assert!(matches!(
        summary.error(),
        Some(ManifestError::LineTooLong { line: 2, .. })
    ));
    assert_eq!(summary.user_meta()["a"], 1);
}

#[test]
fn more_entries_than_the_limit_is_an_error_after_the_limit() {
    let limits = ManifestLimits {
        max_line_bytes: 1024,
        max_entries: 2,
    };
    let summary = ManifestReader::read_str(limits, &manifest(&[("a", 1), ("b", 1), ("c", 1)]));
    assert_eq!(
        summary.error(),
        Some(&ManifestError::TooManyEntries { limit: 2 })
    );
    assert_eq!(summary.files(), 2);
    // Exactly the limit, then directory metadata (not a file): fine.
    let dir = r#"{"logical_key": "a/", "meta": {}}"#;
    let at_limit = ManifestReader::read_str(
        limits,
        &format!("{}\n{dir}", manifest(&[("a/x", 1), ("b", 1)])),
    );
    assert_eq!(at_limit.error(), None);
    assert_eq!(at_limit.files(), 2);
}

#[test]
fn invalid_json_and_wrong_shapes_are_typed_errors_with_the_line() {
    let cases = [
        ("not json", "line 1 is not valid JSON"),
        ("[1]", "line 1 is not a manifest header: found an array"),
        (
            r#"{"version": "v1"}"#,
            "manifest version \"v1\" is not supported",
        ),
        (r#"{"version": 0}"#, "\"version\" is a number"),
        (
            r#"{"user_meta": []}"#,
            "\"user_meta\" is an array, not an object",
        ),
        (
            r#"{"workflow": "w"}"#,
            "\"workflow\" is a string, not an object",
        ),
        (r#"{"message": 5}"#, "\"message\" is a number, not a string"),
        (r#"{"workflow": {"id": 1}}"#, "\"workflow.id\" is a number"),
    ];
    for (header, expected) in cases {
        let error = read(header).error().map(ToString::to_string);
        assert!(
            error.as_deref().is_some_and(|e| e.contains(expected)),
            "{header}: {error:?}"
        );
    }
    let first_line_is_an_entry = read(&entry("a", 1));
    assert!(first_line_is_an_entry
        .error()
        .is_some_and(|e| e.to_string().contains("the header line is missing")));
    let entries = [
        (
            r#"{"logical_key": "a", "physical_keys": ["s3://b/a"]}"#,
            "missing field `size`",
        ),
        (
            r#"{"logical_key": "a", "physical_keys": ["s3://b/a"], "size": 1}"#,
            "missing field `hash`",
        ),
        (
            r#"{"logical_key": "a", "size": "1", "hash": {"type": "t", "value": "v"}}"#,
            "invalid type: string \"1\"",
        ),
        (r#"{"logical_key": 1}"#, "invalid type"),
        (
            r#"{"logical_key": "a", "size": 1, "hash": {"type": "t", "value": "v"}"#,
            "not valid JSON",
        ),
    ];
    for (line, expected) in entries {
        let error = read(&format!("{HEADER}\n{line}"))
            .error()
            .map(ToString::to_string);
        assert!(
            error
                .as_deref()
                .is_some_and(|e| e.starts_with("line 2 ") && e.contains(expected)),
            "{line}: {error:?}"
        );
    }
}

#[test]
fn sizes_that_are_not_u64_are_errors_not_wrapped_or_rounded() {
    for size in ["-1", "1.5", "18446744073709551616", "1e400", "1e3"] {
        let line = format!(
            r#"{{"logical_key": "a", "size": {size}, "hash": {{"type": "t", "value": "v"}}}}"#
        );
        let summary = read(&format!("{HEADER}\n{line}"));
        assert!(
            matches!(
                summary.error(),
                Some(
                    ManifestError::Shape { line: 2, .. }
                        | ManifestError::InvalidJson { line: 2, .. }
                )
            ),
            "{size}: {:?}",
            summary.error()
        );
        assert_eq!(summary.files(), 0);
    }
    // The largest u64 is read, and totals saturate instead of overflowing.
    let max = u64::MAX;
    let summary = read(&manifest(&[("a", max), ("b", max)]));
    assert_eq!(summary.error(), None);
    assert_eq!(summary.bytes(), u64::MAX);
}

#[test]
fn deep_json_is_an_error_not_a_stack_overflow() {
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let header = format!(r#"{{"user_meta": {{"x": {deep}}}}}"#);
    assert!(matches!(
        read(&header).error(),
        Some(ManifestError::InvalidJson { line: 1, .. })
    ));
    let line = format!(
        r#"{{"logical_key": "a", "size": 1, "hash": {{"type": "t", "value": "v"}}, "meta": {deep}}}"#
    );
    let summary = read(&format!("{HEADER}\n{line}"));
    assert!(summary
        .error()
        .is_some_and(|e| e.to_string().contains("recursion limit")));
}

#[test]
fn lone_surrogates_are_invalid_json() {
    let summary = read(r#"{"message": "\ud800"}"#);
    assert!(matches!(
        summary.error(),
        Some(ManifestError::InvalidJson { line: 1, .. })
    ));
    let summary = read(&format!(
        "{HEADER}\n{}",
        r#"{"logical_key": "\udfff", "size": 1, "hash": {"type": "t", "value": "v"}}"#
    ));
    assert!(summary.error().is_some());
    // Invalid UTF-8 bytes too.
    let mut reader = ManifestReader::new(ManifestLimits::default());
    assert!(reader.feed_line(b"{\"message\": \"\xff\"}").is_err());
}

#[test]
fn markup_and_line_breaks_in_keys_and_metadata_are_kept_as_data() {
    let header = r#"{"message": "<script>x</script>\r\nBcc: a@b", "user_meta": {"<b>": "\r\n"}}"#;
    let line = entry("<img src=x>/a\r\nb", 1);
    let summary = read(&format!("{header}\n{line}"));
    assert_eq!(summary.error(), None);
    assert_eq!(summary.message(), Some("<script>x</script>\r\nBcc: a@b"));
    assert_eq!(summary.user_meta()["<b>"], "\r\n");
    assert_eq!(summary.top_level()[0].name, "<img src=x>");
    // Error messages escape what they quote.
    let duplicate = read(&format!("{header}\n{line}\n{line}"));
    let text = duplicate
        .error()
        .map(ToString::to_string)
        .unwrap_or_default();
    assert!(!text.contains('\n') && !text.contains('\r'), "{text}");
}

#[test]
fn a_trailing_carriage_return_and_unknown_fields_are_accepted() {
    let line = r#"{"logical_key": "a", "physical_keys": ["s3://b/a"], "size": 1, "hash": {"type": "t", "value": "v"}, "new": [1]}"#;
    let summary = read(&format!("{HEADER}\r\n{line}\r\n"));
    assert_eq!(summary.error(), None);
    assert_eq!(summary.files(), 1);
}

#[test]
fn directory_metadata_lines_are_not_files() {
    let dir = r#"{"logical_key": "data/", "meta": {"about": "tables"}}"#;
    let summary = read(&format!("{HEADER}\n{dir}\n{}", entry("data/a", 2)));
    assert_eq!(summary.error(), None);
    assert_eq!(summary.files(), 1);
    assert_eq!(summary.bytes(), 2);
}

#[test]
fn entry_metadata_is_fingerprinted_whatever_its_key_order() {
    let with = |meta: &str| {
        let line = format!(
            r#"{{"logical_key": "a", "physical_keys": ["s3://b/a"], "size": 1, "hash": {{"type": "t", "value": "v"}}, "meta": {meta}}}"#
        );
        read(&format!("{HEADER}\n{line}")).entries()[0].meta_fingerprint
    };
    assert_eq!(with(r#"{"x": 1, "y": [2]}"#), with(r#"{"y": [2], "x": 1}"#));
    assert_ne!(with(r#"{"x": 1}"#), with(r#"{"x": 2}"#));
    // As in quilt3 (`meta or {}`), null and missing are `{}`.
    assert_eq!(with("{}"), with("null"));
    assert_ne!(with("{}"), with("[]"));
}

#[test]
fn long_parser_reasons_are_cut() {
    let key = "k".repeat(5000);
    let line = format!(
        r#"{{"logical_key": "a", "size": "{key}", "hash": {{"type": "t", "value": "v"}}}}"#
    );
    let text = read(&format!("{HEADER}\n{line}"))
        .error()
        .map(ToString::to_string)
        .unwrap_or_default();
    assert!(text.chars().count() < 300, "{}", text.len());
}
