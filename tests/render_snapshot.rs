//! Snapshot of the default template (`config/templates/package-created`) rendered for the
//! documented event: `tests/snapshots/package-created.html` is the HTML part exactly as sent,
//! `tests/snapshots/package-created.txt` the subject line, a blank line, then the text part.
//!
//! A template change shows up here as a diff to review. After an intended change, rewrite the
//! snapshots with `UPDATE_SNAPSHOTS=1 cargo test --test render_snapshot` and commit them.

use std::path::{Path, PathBuf};

use quilt_notify::domain::event::PackageEvent;
use quilt_notify::domain::render::template_data;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Compares `actual` with the snapshot file, or rewrites the file under `UPDATE_SNAPSHOTS=1`.
fn assert_snapshot(path: &Path, actual: &str) {
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some_and(|v| v == "1") {
        std::fs::write(path, actual).expect("write snapshot");
        return;
    }
    let expected = std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e}; create it with UPDATE_SNAPSHOTS=1",
            path.display()
        )
    });
    if expected != actual {
        let line = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .map_or_else(
                || expected.lines().count().min(actual.lines().count()) + 1,
                |i| i + 1,
            );
        panic!(
            "{} differs from the rendering, first at line {line}:\n  snapshot: {:?}\n  rendered: {:?}\n\
             If the change is intended: UPDATE_SNAPSHOTS=1 cargo test --test render_snapshot",
            path.display(),
            expected.lines().nth(line - 1).unwrap_or("<end>"),
            actual.lines().nth(line - 1).unwrap_or("<end>"),
        );
    }
}

#[test]
fn the_default_template_renders_the_documented_event_exactly_as_the_snapshots() {
    let templates = root().join("config/templates");
    let renderer =
        quilt_notify::templates::load_dir(&templates, ["package-created"]).expect("templates load");
    let body = std::fs::read_to_string(root().join("events/package-revision.json")).expect("event");
    let event = PackageEvent::parse(&body).expect("documented event parses");
    let data = template_data(&event, Some("catalog.example.com"), "package-created", None);
    let email = renderer.render("package-created", data).expect("renders");

    let snapshots = root().join("tests/snapshots");
    assert_snapshot(&snapshots.join("package-created.html"), &email.html);
    assert_snapshot(
        &snapshots.join("package-created.txt"),
        &format!("Subject: {}\n\n{}", email.subject, email.text),
    );
}
