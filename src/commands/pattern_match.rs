//! `quilt-notify match`: asks the pattern engine whether events match, without AWS.
//!
//! Three modes: one pattern and one event (prints `true` or `false`); a configuration and one
//! event (every route with its verdict and, for a miss, the first pattern field that failed); and
//! `--jsonl`, which checks a whole corpus of `{"pattern": …, "event": …}` lines in one process.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use serde_json::{json, Value};

use crate::config::Settings;
use crate::domain::event::PackageEvent;
use crate::domain::pattern::Pattern;
use crate::domain::route::RouteTable;

/// Arguments of `quilt-notify match`.
#[derive(Debug, Args)]
pub struct MatchArgs {
    /// The EventBridge event pattern: inline JSON, or `@FILE`.
    #[arg(long, value_name = "JSON|@FILE", conflicts_with_all = ["config", "jsonl"], requires = "event")]
    pub pattern: Option<String>,
    /// The event (the EventBridge envelope): inline JSON, or `@FILE`.
    #[arg(long, value_name = "JSON|@FILE", conflicts_with = "jsonl")]
    pub event: Option<String>,
    /// Match the event against every route of this configuration (as for `run`) instead of one
    /// pattern.
    #[arg(
        short,
        long,
        value_name = "PATH",
        requires = "event",
        conflicts_with = "jsonl"
    )]
    pub config: Option<PathBuf>,
    /// Read `{"pattern": …, "event": …}` lines from standard input and write one line per input
    /// line: `{"match": true|false}` or `{"error": "…"}`. A pattern or event may also be given as
    /// a string holding its JSON, as the EventBridge API takes them.
    #[arg(long)]
    pub jsonl: bool,
}

/// Runs the command, reading `--jsonl` input from `input` and writing results to `output`.
///
/// Returns whether something matched: the pattern (one-pattern mode) or at least one route
/// (`--config`); with `--jsonl`, `true` once every line was answered (a bad line is answered with
/// an error line, not a failure). Suggested exit codes: 0 for `true`, 1 for `false`, 2 for an
/// error.
///
/// # Errors
/// A pattern EventBridge would reject (with its path and reason), JSON that does not parse, an
/// unreadable `@FILE`, a configuration that does not load or whose routes do not compile, an
/// event the daemon would reject, missing arguments, or a failure to read or write.
pub fn run(args: &MatchArgs, input: impl BufRead, mut output: impl Write) -> anyhow::Result<bool> {
    if args.jsonl {
        return jsonl(input, output);
    }
    let event_arg = args
        .event
        .as_deref()
        .context("--event is required (or use --jsonl)")?;
    if let Some(config) = &args.config {
        return routes(config, event_arg, output);
    }
    let pattern_arg = args
        .pattern
        .as_deref()
        .context("give --pattern with --event, --config with --event, or --jsonl")?;
    let pattern = Pattern::compile(&json_arg(pattern_arg, "--pattern")?)
        .map_err(|e| anyhow::anyhow!("invalid pattern {e}"))?;
    let matched = pattern.matches(&json_arg(event_arg, "--event")?);
    writeln!(output, "{matched}")?;
    Ok(matched)
}

/// An argument holding inline JSON, or `@path` to a file holding it.
fn json_arg(arg: &str, name: &str) -> anyhow::Result<Value> {
    let text = match arg.strip_prefix('@') {
        Some(path) => {
            std::fs::read_to_string(path).with_context(|| format!("{name}: reading {path}"))?
        }
        None => arg.to_owned(),
    };
    serde_json::from_str(&text).with_context(|| format!("{name} is not JSON"))
}

fn text_arg(arg: &str, name: &str) -> anyhow::Result<String> {
    match arg.strip_prefix('@') {
        Some(path) => {
            std::fs::read_to_string(path).with_context(|| format!("{name}: reading {path}"))
        }
        None => Ok(arg.to_owned()),
    }
}

/// Every route of the configuration against the event, as the daemon would see it.
fn routes(config: &Path, event_arg: &str, mut output: impl Write) -> anyhow::Result<bool> {
    let settings = Settings::load(Some(config))?;
    let table = RouteTable::compile(&settings.routes)?;
    let body = text_arg(event_arg, "--event")?;
    let event = PackageEvent::parse(&body).context("the event would be rejected by the daemon")?;
    let mut any = false;
    for route in table.routes() {
        match route.pattern.first_mismatch(event.envelope()) {
            None => {
                any = true;
                writeln!(output, "{}: match", route.name)?;
            }
            Some(path) => writeln!(
                output,
                "{}: no match (first failing field: {path})",
                route.name
            )?,
        }
    }
    Ok(any)
}

/// One result line per input line.
fn jsonl(input: impl BufRead, mut output: impl Write) -> anyhow::Result<bool> {
    for line in input.lines() {
        let line = line.context("reading standard input")?;
        let result = match line_verdict(&line) {
            Ok(matched) => json!({ "match": matched }),
            Err(reason) => json!({ "error": reason }),
        };
        writeln!(output, "{result}")?;
    }
    output.flush()?;
    Ok(true)
}

fn line_verdict(line: &str) -> Result<bool, String> {
    let mut value: Value =
        serde_json::from_str(line).map_err(|e| format!("line is not JSON: {e}"))?;
    let pattern = embedded_json(value.get_mut("pattern"), "pattern")?;
    let event = embedded_json(value.get_mut("event"), "event")?;
    let pattern = Pattern::compile(&pattern).map_err(|e| format!("invalid pattern {e}"))?;
    Ok(pattern.matches(&event))
}

/// A field holding JSON, or a string holding JSON text.
fn embedded_json(field: Option<&mut Value>, name: &str) -> Result<Value, String> {
    match field.map(Value::take) {
        None | Some(Value::Null) => Err(format!("missing \"{name}\"")),
        Some(Value::String(text)) => serde_json::from_str(&text)
            .map_err(|e| format!("\"{name}\" is a string but not JSON: {e}")),
        Some(other) => Ok(other),
    }
}

#[cfg(test)]
mod tests {
    use super::{run, MatchArgs};

    fn args(pattern: Option<&str>, event: Option<&str>, jsonl: bool) -> MatchArgs {
        MatchArgs {
            pattern: pattern.map(str::to_owned),
            event: event.map(str::to_owned),
            config: None,
            jsonl,
        }
    }

    fn run_to_string(args: &MatchArgs, input: &str) -> (anyhow::Result<bool>, String) {
        let mut out = Vec::new();
        let result = run(args, input.as_bytes(), &mut out);
        (result, String::from_utf8_lossy(&out).into_owned())
    }

    #[test]
    fn one_pattern_prints_true_or_false() {
        let pattern = r#"{"detail": {"handle": [{"prefix": "team/"}]}}"#;
        let (result, out) = run_to_string(
            &args(
                Some(pattern),
                Some(r#"{"detail": {"handle": "team/a"}}"#),
                false,
            ),
            "",
        );
        assert_eq!((result.ok(), out.as_str()), (Some(true), "true\n"));
        let (result, out) = run_to_string(
            &args(Some(pattern), Some(r#"{"detail": {"handle": "x"}}"#), false),
            "",
        );
        assert_eq!((result.ok(), out.as_str()), (Some(false), "false\n"));
    }

    #[test]
    fn patterns_and_events_may_come_from_files() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let pattern = dir.path().join("pattern.json");
        let event = dir.path().join("event.json");
        std::fs::write(&pattern, r#"{"source": ["com.quiltdata"]}"#)
            .unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(&event, r#"{"source": "com.quiltdata"}"#).unwrap_or_else(|e| panic!("{e}"));
        let a = args(
            Some(&format!("@{}", pattern.display())),
            Some(&format!("@{}", event.display())),
            false,
        );
        assert_eq!(run_to_string(&a, "").1, "true\n");
    }

    #[test]
    fn an_invalid_pattern_is_an_error_naming_path_and_reason() {
        let (result, _) = run_to_string(
            &args(
                Some(r#"{"detail": {"handle": [{"prefx": "a"}]}}"#),
                Some("{}"),
                false,
            ),
            "",
        );
        let message = result.err().map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(
            message,
            "invalid pattern at `detail.handle`: unknown operator \"prefx\""
        );
    }

    #[test]
    fn config_mode_gives_every_route_its_verdict() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let config = dir.path().join("quilt-notify.toml");
        std::fs::write(
            &config,
            r#"
[queue]
url = "http://127.0.0.1:4566/000000000000/q"
[ses]
from = "quilt@example.com"
[[routes]]
name = "docs"
template = "package-created"
to = ["team@example.com"]
pattern = { source = ["com.quiltdata"], detail = { handle = [{ prefix = "" }] } }
[[routes]]
name = "team"
template = "package-created"
to = ["team@example.com"]
pattern = { source = ["com.quiltdata"], detail = { handle = [{ prefix = "team/" }] } }
"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let a = MatchArgs {
            pattern: None,
            event: Some(format!(
                "@{}/events/package-revision.json",
                env!("CARGO_MANIFEST_DIR")
            )),
            config: Some(config),
            jsonl: false,
        };
        let (result, out) = run_to_string(&a, "");
        assert_eq!(result.map_err(|e| e.to_string()), Ok(true));
        assert_eq!(
            out,
            "docs: match\nteam: no match (first failing field: detail.handle)\n"
        );
    }

    #[test]
    fn jsonl_answers_every_line() {
        let input = [
            r#"{"pattern": {"a": ["x"]}, "event": {"a": "x"}}"#,
            r#"{"pattern": "{\"a\": [\"x\"]}", "event": "{\"a\": \"y\"}"}"#,
            r#"{"pattern": {"a": "x"}, "event": {}}"#,
            r#"{"event": {}}"#,
            "not json",
        ]
        .join("\n");
        let (result, out) = run_to_string(&args(None, None, true), &input);
        assert_eq!(result.ok(), Some(true));
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 5, "{out}");
        assert_eq!(lines[0], r#"{"match":true}"#);
        assert_eq!(lines[1], r#"{"match":false}"#);
        assert!(
            lines[2]
                .starts_with(r#"{"error":"invalid pattern at `a`: must be an object or an array"#),
            "{}",
            lines[2]
        );
        assert_eq!(lines[3], r#"{"error":"missing \"pattern\""}"#);
        assert!(
            lines[4].starts_with(r#"{"error":"line is not JSON"#),
            "{}",
            lines[4]
        );
    }
}
