//! Rendering: template data from an event, and Handlebars templates into subject, HTML and text.
//!
//! Two registries, because escaping is a property of the output: the HTML part escapes every
//! value, the subject and text parts do not (they are not HTML). Both are strict, so a template
//! that names a variable the event lacks fails loudly instead of sending a hole.

use std::collections::HashMap;

use handlebars::{Context, Handlebars};
use serde_json::{Map, Value};

use super::catalog::{encode_path, CatalogLinks};
use super::details::Details;
use super::event::PackageEvent;
use super::route::Route;

/// The three parts of one template, as source text.
#[derive(Debug, Clone)]
pub struct TemplateSource {
    /// Subject line template.
    pub subject: String,
    /// HTML body template.
    pub html: String,
    /// Plain-text body template.
    pub text: String,
}

/// A rendered email body, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedEmail {
    /// One line, control characters removed.
    pub subject: String,
    /// HTML part.
    pub html: String,
    /// Plain-text part.
    pub text: String,
}

/// Why a template could not be compiled or rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// A template does not parse.
    #[error("template {0}")]
    Syntax(Box<handlebars::TemplateError>),
    /// Rendering failed, e.g. a variable this event does not have.
    #[error("{0}")]
    Render(Box<handlebars::RenderError>),
    /// No template of that name was loaded.
    #[error("no template named \"{0}\"")]
    Unknown(String),
}

/// The file names of a template's parts inside its directory.
pub const PARTS: [&str; 3] = ["subject.hbs", "html.hbs", "text.hbs"];

/// Compiled templates, by name.
#[derive(Debug, Clone)]
pub struct Renderer {
    html: Handlebars<'static>,
    plain: Handlebars<'static>,
    /// Template name → registry keys of its subject, html and text parts. Keys are the file
    /// paths when loaded from files, so render errors point at the file to fix.
    keys: HashMap<String, [String; 3]>,
    /// Template names whose source mentions `tables` (see [`Renderer::may_use_tables`]).
    tables: std::collections::HashSet<String>,
}

impl Default for Renderer {
    fn default() -> Self {
        Self::new()
    }
}

impl Renderer {
    /// An empty renderer.
    pub fn new() -> Self {
        let mut html = Handlebars::new();
        html.set_strict_mode(true);
        let mut plain = Handlebars::new();
        plain.set_strict_mode(true);
        plain.register_escape_fn(handlebars::no_escape);
        Self {
            html,
            plain,
            keys: HashMap::new(),
            tables: std::collections::HashSet::new(),
        }
    }

    /// Adds (or replaces) a template from source text.
    ///
    /// # Errors
    /// A part does not parse.
    pub fn add(&mut self, name: &str, source: &TemplateSource) -> Result<(), RenderError> {
        self.add_named(name, PARTS.map(|part| format!("{name}/{part}")), source)
    }

    /// Adds (or replaces) a template whose parts errors call by `part_names` (subject, html,
    /// text): the file paths when read from files, so an error points at the file to fix.
    ///
    /// # Errors
    /// A part does not parse.
    pub fn add_named(
        &mut self,
        name: &str,
        part_names: [String; 3],
        source: &TemplateSource,
    ) -> Result<(), RenderError> {
        let keys = part_names;
        let syntax = |e| RenderError::Syntax(Box::new(e));
        let [subject, html, text] = &keys;
        self.plain
            .register_template_string(subject, &source.subject)
            .map_err(syntax)?;
        self.html
            .register_template_string(html, &source.html)
            .map_err(syntax)?;
        self.plain
            .register_template_string(text, &source.text)
            .map_err(syntax)?;
        self.keys.insert(name.to_owned(), keys);
        if [&source.subject, &source.html, &source.text]
            .iter()
            .any(|part| part.contains("tables"))
        {
            self.tables.insert(name.to_owned());
        } else {
            self.tables.remove(name);
        }
        Ok(())
    }

    /// Whether the template may show `changes.tables`: its source mentions `tables` anywhere
    /// (a cheap, conservative test: a comment counts too). An unknown template (an SES stored
    /// one) may.
    pub fn may_use_tables(&self, name: &str) -> bool {
        !self.keys.contains_key(name) || self.tables.contains(name)
    }

    /// Whether a template of that name is loaded.
    pub fn has(&self, name: &str) -> bool {
        self.keys.contains_key(name)
    }

    /// Renders one template with the given data. Takes the data by value: handlebars renders
    /// from its own `Context`, and `Registry::render(&data)` would deep-copy it for each part.
    ///
    /// # Errors
    /// Unknown template, or a strict-mode failure such as a variable missing from the data.
    pub fn render(&self, name: &str, data: Value) -> Result<RenderedEmail, RenderError> {
        let Some([subject, html, text]) = self.keys.get(name) else {
            return Err(RenderError::Unknown(name.to_owned()));
        };
        let failed = |e| RenderError::Render(Box::new(e));
        let context = Context::from(data);
        let subject = self
            .plain
            .render_with_context(subject, &context)
            .map_err(failed)?;
        let html = self
            .html
            .render_with_context(html, &context)
            .map_err(failed)?;
        let text = self
            .plain
            .render_with_context(text, &context)
            .map_err(failed)?;
        Ok(RenderedEmail {
            subject: one_line(&subject),
            html,
            text,
        })
    }
}

/// The data every template sees: the whole envelope plus derived fields (see
/// docs/templates.md). `catalog_url` is `null` when no catalog host is configured, and `package`
/// and `changes` are `null` when no details were read, so `{{#if …}}` works on each; the keys are
/// always there, because templates are strict.
pub fn template_data(
    event: &PackageEvent,
    catalog_host: Option<&str>,
    route: &str,
    details: Option<&Details>,
) -> Value {
    let mut data = match event.envelope() {
        Value::Object(map) => map.clone(),
        _ => Map::new(),
    };
    let bucket = encode_path(event.bucket());
    let handle = encode_path(event.handle());
    let top_hash = encode_path(event.top_hash());
    let links = catalog_host.map(|host| CatalogLinks::new(host, event.bucket(), event.handle()));
    let link = |make: &dyn Fn(&CatalogLinks) -> String| {
        links
            .as_ref()
            .map_or(Value::Null, |l| Value::String(make(l)))
    };
    let catalog_url = link(&|l| l.tree(event.top_hash()));
    let revisions_url = link(&|l| l.revisions());
    let fields = [
        ("bucket", Value::from(event.bucket())),
        ("handle", Value::from(event.handle())),
        ("top_hash", Value::from(event.top_hash())),
        (
            "short_hash",
            Value::from(event.top_hash().chars().take(7).collect::<String>()),
        ),
        ("type", Value::from(event.kind())),
        ("time", Value::from(event.time())),
        ("catalog_url", catalog_url),
        ("revisions_url", revisions_url),
        (
            "quilt_uri",
            Value::String(format!("quilt+s3://{bucket}#package={handle}@{top_hash}")),
        ),
        ("route", Value::from(route)),
        // Set by `route_data` for routes with a contact-list topic.
        ("unsubscribe_url", Value::Null),
        (
            "package",
            details.map_or(Value::Null, Details::package_json),
        ),
        (
            "changes",
            details.map_or(Value::Null, Details::changes_json),
        ),
    ];
    for (key, value) in fields {
        data.insert(key.to_owned(), value);
    }
    Value::Object(data)
}

/// SES's placeholder for a recipient's one-click unsubscribe link. SES replaces it in the sent
/// email when the send names a contact-list topic; Handlebars passes it through as text.
pub const SES_UNSUBSCRIBE_PLACEHOLDER: &str = "{{amazonSESUnsubscribeUrl}}";

/// The data one route's template sees: [`template_data`], with the details only when the route
/// shows them (`details = true`), and an `unsubscribe_url` (SES's placeholder) when the route
/// has a topic, so `{{#if unsubscribe_url}}` shows the link only where SES will fill it in.
pub fn route_data(
    route: &Route,
    event: &PackageEvent,
    catalog_host: Option<&str>,
    details: Option<&Details>,
) -> Value {
    let shown = details.filter(|_| route.details);
    let mut data = template_data(event, catalog_host, &route.name, shown);
    if let (Some(_), Value::Object(map)) = (&route.topic, &mut data) {
        map.insert(
            "unsubscribe_url".to_owned(),
            Value::from(SES_UNSUBSCRIBE_PLACEHOLDER),
        );
    }
    data
}

/// Subjects are one header line: control characters (CR, LF, tabs…) become spaces, runs of
/// white space collapse, so no value can inject a header or break the line.
fn one_line(subject: &str) -> String {
    subject
        .split(|c: char| c.is_control() || c.is_whitespace())
        .filter(|word| !word.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCUMENTED: &str = include_str!("../../events/package-revision.json");

    fn event(body: &str) -> PackageEvent {
        PackageEvent::parse(body).expect("event")
    }

    fn renderer(subject: &str, html: &str, text: &str) -> Renderer {
        let mut r = Renderer::new();
        r.add(
            "t",
            &TemplateSource {
                subject: subject.to_owned(),
                html: html.to_owned(),
                text: text.to_owned(),
            },
        )
        .expect("template parses");
        r
    }

    #[test]
    fn template_data_has_the_derived_fields_and_the_envelope() {
        let data = template_data(&event(DOCUMENTED), Some("catalog.example.com"), "r", None);
        let hash = "a0fddace2eb2fd91faa697d237a5dbdcfa77f0fd38ca8b4c850dbd93d142ee69";
        assert_eq!(data["bucket"], "example");
        assert_eq!(data["handle"], "some/package");
        assert_eq!(data["top_hash"], hash);
        assert_eq!(data["short_hash"], "a0fddac");
        assert_eq!(data["type"], "created");
        assert_eq!(data["time"], "2024-04-25T14:46:51Z");
        assert_eq!(data["route"], "r");
        assert_eq!(
            data["catalog_url"],
            format!("https://catalog.example.com/b/example/packages/some/package/tree/{hash}/")
        );
        assert_eq!(
            data["quilt_uri"],
            format!("quilt+s3://example#package=some/package@{hash}")
        );
        assert_eq!(data["detail-type"], "package-revision");
        assert_eq!(data["detail"]["topHash"], hash);
    }

    #[test]
    fn catalog_url_is_null_without_a_host_and_tolerates_a_scheme() {
        assert!(template_data(&event(DOCUMENTED), None, "r", None)["catalog_url"].is_null());
        let data = template_data(
            &event(DOCUMENTED),
            Some("https://cat.example.com/"),
            "r",
            None,
        );
        let url = data["catalog_url"].as_str().expect("string");
        assert!(url.starts_with("https://cat.example.com/b/"), "{url}");
    }

    #[test]
    fn html_part_escapes_values_and_text_part_does_not() {
        let hostile = DOCUMENTED.replace("some/package", "<b>x</b>&\\\"");
        let r = renderer("{{handle}}", "<p>{{handle}}</p>", "{{handle}}");
        let out = r
            .render("t", template_data(&event(&hostile), None, "r", None))
            .expect("renders");
        assert_eq!(out.html, "<p>&lt;b&gt;x&lt;/b&gt;&amp;&quot;</p>");
        assert_eq!(out.text, "<b>x</b>&\"");
    }

    #[test]
    fn subjects_lose_control_characters() {
        let hostile = DOCUMENTED.replace("some/package", "evil\\r\\nBcc: x@y.z\\u0000\\tname");
        let r = renderer("New: {{handle}}  ", "", "");
        let out = r
            .render("t", template_data(&event(&hostile), None, "r", None))
            .expect("renders");
        assert_eq!(out.subject, "New: evil Bcc: x@y.z name");
    }

    #[test]
    fn hostile_handles_cannot_break_out_of_urls() {
        let hostile = DOCUMENTED.replace("some/package", "a/b\\\"><script>?#x y");
        let data = template_data(&event(&hostile), Some("cat.example.com"), "r", None);
        let url = data["catalog_url"].as_str().expect("url");
        assert!(
            url.contains("/packages/a/b%22%3E%3Cscript%3E%3F%23x%20y/tree/"),
            "{url}"
        );
    }

    #[test]
    fn a_missing_variable_is_an_error_not_an_empty_string() {
        let r = renderer("{{no_such_field}}", "", "");
        let err = r
            .render("t", template_data(&event(DOCUMENTED), None, "r", None))
            .expect_err("strict");
        assert!(err.to_string().contains("no_such_field"), "{err}");
    }

    #[test]
    fn optional_values_can_be_tested_with_if() {
        let r = renderer(
            "s",
            "{{#if catalog_url}}<a href=\"{{catalog_url}}\">{{/if}}",
            "",
        );
        let without = r
            .render("t", template_data(&event(DOCUMENTED), None, "r", None))
            .expect("renders");
        assert_eq!(without.html, "");
        let with = r
            .render(
                "t",
                template_data(&event(DOCUMENTED), Some("c.io"), "r", None),
            )
            .expect("renders");
        assert!(with.html.starts_with("<a href=\"https://c.io/b/"));
    }

    #[test]
    fn unknown_templates_and_syntax_errors_are_reported() {
        let r = renderer("s", "h", "t");
        assert!(matches!(
            r.render("nope", Value::Null),
            Err(RenderError::Unknown(_))
        ));
        let mut r = Renderer::new();
        let err = r
            .add(
                "broken",
                &TemplateSource {
                    subject: "{{#if x}}".to_owned(),
                    html: String::new(),
                    text: String::new(),
                },
            )
            .expect_err("syntax");
        assert!(err.to_string().contains("broken/subject.hbs"), "{err}");
    }

    #[test]
    fn a_template_may_use_tables_only_when_a_part_mentions_them() {
        let without = renderer("{{handle}}", "<p>{{changes.added.count}}</p>", "x");
        assert!(!without.may_use_tables("t"));
        let with = renderer("s", "h", "{{#each changes.tables}}{{path}}{{/each}}");
        assert!(with.may_use_tables("t"));
        // Not loaded from files (a stored template): cannot tell, so it may.
        assert!(without.may_use_tables("stored-in-ses"));
    }

    #[test]
    fn the_shipped_template_renders_the_documented_event() {
        let mut r = Renderer::new();
        r.add(
            "package-created",
            &TemplateSource {
                subject: include_str!("../../config/templates/package-created/subject.hbs").into(),
                html: include_str!("../../config/templates/package-created/html.hbs").into(),
                text: include_str!("../../config/templates/package-created/text.hbs").into(),
            },
        )
        .expect("parses");
        let hash = "a0fddace2eb2fd91faa697d237a5dbdcfa77f0fd38ca8b4c850dbd93d142ee69";
        let out = r
            .render(
                "package-created",
                template_data(&event(DOCUMENTED), Some("catalog.example.com"), "r", None),
            )
            .expect("renders");
        assert!(out.subject.contains("some/package"), "{}", out.subject);
        // Handlebars escapes `=` as `&#x3D;` in HTML; a browser shows it as `=`.
        let html_as_shown = out.html.replace("&#x3D;", "=");
        for part in [&html_as_shown, &out.text] {
            assert!(part.contains(&format!("quilt+s3://example#package=some/package@{hash}")));
            assert!(part.contains(&format!(
                "https://catalog.example.com/b/example/packages/some/package/tree/{hash}/"
            )));
            assert!(part.contains("example"));
            assert!(part.contains("2024-04-25"));
        }
        let without_catalog = r
            .render(
                "package-created",
                template_data(&event(DOCUMENTED), None, "r", None),
            )
            .expect("renders without a catalog");
        assert!(!without_catalog.html.contains("/b/example/packages"));
    }

    #[test]
    fn the_unsubscribe_link_is_ses_placeholder_only_for_routes_with_a_topic() {
        let mut r = Renderer::new();
        let link = "{{#if unsubscribe_url}}<a href=\"{{unsubscribe_url}}\">Unsubscribe</a>{{/if}}";
        r.add(
            "t",
            &TemplateSource {
                subject: "s".into(),
                html: link.into(),
                text: "{{#if unsubscribe_url}}Unsubscribe: {{unsubscribe_url}}{{/if}}".into(),
            },
        )
        .expect("parses");
        let route = |topic: Option<&str>| {
            let spec = crate::domain::route::RouteSpec::builder("r")
                .to(&["a@b.c"])
                .pattern(serde_json::json!({"source": ["x"]}));
            let spec = match topic {
                Some(topic) => spec.topic(topic),
                None => spec,
            };
            Route::compile(&spec.build()).expect("route")
        };
        let event = event(DOCUMENTED);
        let plain = r
            .render("t", route_data(&route(None), &event, None, None))
            .expect("renders");
        assert_eq!((plain.html.as_str(), plain.text.as_str()), ("", ""));
        let listed = r
            .render(
                "t",
                route_data(&route(Some("releases")), &event, None, None),
            )
            .expect("renders");
        assert_eq!(
            listed.html,
            "<a href=\"{{amazonSESUnsubscribeUrl}}\">Unsubscribe</a>"
        );
        assert_eq!(listed.text, "Unsubscribe: {{amazonSESUnsubscribeUrl}}");
    }
}
