//! Template files: reads `dir/<name>/{subject,html,text}.hbs` into a [`Renderer`]. File I/O
//! lives here, at the edge, so the domain's renderer only ever sees source text.

use std::path::{Path, PathBuf};

use crate::domain::render::{RenderError, Renderer, TemplateSource, PARTS};

/// Why the templates could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A template file could not be read.
    #[error("cannot read template {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A template does not parse (the error names the file and line).
    #[error(transparent)]
    Invalid(#[from] RenderError),
}

/// Loads each named template (once, however often it is named) from its directory under `dir`.
/// Parts are named by their file paths, so a render error points at the file to fix.
///
/// # Errors
/// A file is missing or unreadable, or a template does not parse (with file and line).
pub fn load_dir<'a>(
    dir: &Path,
    names: impl IntoIterator<Item = &'a str>,
) -> Result<Renderer, LoadError> {
    let mut renderer = Renderer::new();
    for name in names {
        if renderer.has(name) {
            continue;
        }
        let paths = PARTS.map(|part| dir.join(name).join(part));
        let read = |path: &PathBuf| {
            std::fs::read_to_string(path).map_err(|source| LoadError::Read {
                path: path.clone(),
                source,
            })
        };
        let source = TemplateSource {
            subject: read(&paths[0])?,
            html: read(&paths[1])?,
            text: read(&paths[2])?,
        };
        renderer.add_named(name, paths.map(|p| p.display().to_string()), &source)?;
    }
    Ok(renderer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::event::PackageEvent;
    use crate::domain::render::template_data;

    const SAMPLE: &str = include_str!("../../events/package-revision.json");

    fn write_template(dir: &Path, name: &str, html: &str) -> PathBuf {
        let template = dir.join(name);
        std::fs::create_dir(&template).expect("mkdir");
        std::fs::write(template.join("subject.hbs"), "ok").expect("write");
        std::fs::write(template.join("html.hbs"), html).expect("write");
        std::fs::write(template.join("text.hbs"), "").expect("write");
        template
    }

    #[test]
    fn render_errors_of_loaded_templates_name_the_file_line_and_variable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let template = write_template(dir.path(), "t", "<p>\n{{detail.nope}}</p>");
        let r = load_dir(dir.path(), ["t"]).expect("loads");
        let event = PackageEvent::parse(SAMPLE).expect("sample");
        let err = r
            .render("t", template_data(&event, None, "r", None))
            .expect_err("strict")
            .to_string();
        assert!(
            err.contains(&template.join("html.hbs").display().to_string()),
            "{err}"
        );
        assert!(err.contains("line 2"), "{err}");
        assert!(err.contains("nope"), "{err}");
    }

    #[test]
    fn a_missing_part_is_named_by_its_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let template = write_template(dir.path(), "t", "");
        std::fs::remove_file(template.join("text.hbs")).expect("rm");
        let err = load_dir(dir.path(), ["t"]).expect_err("missing");
        assert!(matches!(err, LoadError::Read { .. }), "{err:?}");
        assert!(
            err.to_string()
                .contains(&template.join("text.hbs").display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn a_syntax_error_names_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let template = write_template(dir.path(), "t", "{{#if x}}");
        let err = load_dir(dir.path(), ["t", "t"]).expect_err("syntax");
        assert!(matches!(err, LoadError::Invalid(_)), "{err:?}");
        assert!(
            err.to_string()
                .contains(&template.join("html.hbs").display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn the_shipped_templates_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/templates");
        let r = load_dir(&dir, ["package-created", "package-created"]).expect("loads");
        assert!(r.has("package-created"));
    }
}
