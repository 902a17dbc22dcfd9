//! [`RouteSpecBuilder`]: routes for tests and benches, built in a line (`cfg(test)` or the
//! `test-support` feature; never in the release binary).
//!
//! The builder writes the route in the configuration file's own keys and deserializes that, so a
//! built spec has exactly the defaults a file gives (`details`, `skip_unchanged`,
//! `max_recipients`, ...) and stays valid however `RouteSpec` stores its fields.

use serde_json::{json, Map, Value};

use super::route::RouteSpec;

impl RouteSpec {
    /// A route named `name` that renders template `t` to `team@example.com` for every Quilt
    /// event (`{"source": ["com.quiltdata"]}`); every other key as a config file leaves it.
    pub fn builder(name: &str) -> RouteSpecBuilder {
        let keys = json!({
            "name": name,
            "template": "t",
            "to": ["team@example.com"],
            "pattern": {"source": ["com.quiltdata"]},
        });
        let Value::Object(keys) = keys else {
            unreachable!("an object literal")
        };
        RouteSpecBuilder { keys }
    }
}

/// A [`RouteSpec`] being built: each method sets one key of the route's table in the
/// configuration file.
#[derive(Debug, Clone)]
#[must_use]
pub struct RouteSpecBuilder {
    keys: Map<String, Value>,
}

impl RouteSpecBuilder {
    fn set(mut self, key: &str, value: Value) -> Self {
        self.keys.insert(key.to_owned(), value);
        self
    }

    /// `pattern`: an object, or a string holding its JSON.
    pub fn pattern(self, pattern: Value) -> Self {
        self.set("pattern", pattern)
    }

    /// `template`.
    pub fn template(self, template: &str) -> Self {
        self.set("template", json!(template))
    }

    /// No `template` key (a digest route names its template in `digest.template`).
    pub fn no_template(mut self) -> Self {
        self.keys.remove("template");
        self
    }

    /// `to`.
    pub fn to(self, to: &[&str]) -> Self {
        self.set("to", json!(to))
    }

    /// `cc`.
    pub fn cc(self, cc: &[&str]) -> Self {
        self.set("cc", json!(cc))
    }

    /// `bcc`.
    pub fn bcc(self, bcc: &[&str]) -> Self {
        self.set("bcc", json!(bcc))
    }

    /// `reply_to`.
    pub fn reply_to(self, reply_to: &[&str]) -> Self {
        self.set("reply_to", json!(reply_to))
    }

    /// `from`.
    pub fn from(self, from: &str) -> Self {
        self.set("from", json!(from))
    }

    /// `details`.
    pub fn details(self, details: bool) -> Self {
        self.set("details", json!(details))
    }

    /// `package_pattern`: an object, or a string holding its JSON.
    pub fn package_pattern(self, pattern: Value) -> Self {
        self.set("package_pattern", pattern)
    }

    /// `skip_unchanged`.
    pub fn skip_unchanged(self, skip: bool) -> Self {
        self.set("skip_unchanged", json!(skip))
    }

    /// `to_from`.
    pub fn to_from(self, path: &str) -> Self {
        self.set("to_from", json!(path))
    }

    /// `allowed_domains`.
    pub fn allowed_domains(self, domains: &[&str]) -> Self {
        self.set("allowed_domains", json!(domains))
    }

    /// `max_recipients`.
    pub fn max_recipients(self, most: usize) -> Self {
        self.set("max_recipients", json!(most))
    }

    /// `topic`.
    pub fn topic(self, topic: &str) -> Self {
        self.set("topic", json!(topic))
    }

    /// `digest`: the route's digest table, e.g. `json!({"every": "1h"})`.
    pub fn digest(self, digest: Value) -> Self {
        self.set("digest", digest)
    }

    /// The spec, as the configuration loader would read these keys.
    ///
    /// # Panics
    ///
    /// When the keys do not deserialize (a value of the wrong type): a mistake in the test.
    pub fn build(self) -> RouteSpec {
        serde_json::from_value(Value::Object(self.keys))
            .unwrap_or_else(|e| panic!("a route spec the config loader would refuse: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `RouteSpec` has no `PartialEq`; its `Debug` shows every field.
    fn same(built: RouteSpec, file: Value) {
        let from_file: RouteSpec = serde_json::from_value(file).expect("parses");
        assert_eq!(format!("{built:?}"), format!("{from_file:?}"));
    }

    #[test]
    fn a_built_route_has_the_defaults_a_config_file_gives() {
        same(
            RouteSpec::builder("r").build(),
            json!({
                "name": "r", "template": "t", "to": ["team@example.com"],
                "pattern": {"source": ["com.quiltdata"]}
            }),
        );
    }

    #[test]
    fn each_setter_sets_its_own_key() {
        let built = RouteSpec::builder("r")
            .pattern(json!({"detail": {"bucket": ["b"]}}))
            .no_template()
            .digest(json!({"every": "1h"}))
            .to(&[])
            .cc(&["c@example.com"])
            .bcc(&["b@example.com"])
            .reply_to(&["r@example.com"])
            .from("q@example.com")
            .details(false)
            .package_pattern(json!({"package": {"workflow": {"id": ["x"]}}}))
            .skip_unchanged(false)
            .to_from("user_meta.owners")
            .allowed_domains(&["example.com"])
            .max_recipients(7)
            .topic("releases")
            .build();
        same(
            built,
            json!({
                "name": "r", "pattern": {"detail": {"bucket": ["b"]}}, "digest": {"every": "1h"},
                "to": [], "cc": ["c@example.com"], "bcc": ["b@example.com"],
                "reply_to": ["r@example.com"], "from": "q@example.com", "details": false,
                "package_pattern": {"package": {"workflow": {"id": ["x"]}}},
                "skip_unchanged": false, "to_from": "user_meta.owners",
                "allowed_domains": ["example.com"], "max_recipients": 7, "topic": "releases"
            }),
        );
    }
}
