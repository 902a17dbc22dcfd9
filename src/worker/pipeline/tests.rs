//! The pipeline with package details: read once per event and only when a matched route uses
//! them, then decided per route. The store is in memory and holds real quilt3 manifests
//! (`tests/data/quilt`); the same promises against LocalStack S3 are in `tests/it/details.rs`.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::{Pipeline, PipelineParts};
use crate::adapters::memory::fixtures::{push, top_hash, BUCKET, HANDLE};
use crate::adapters::memory::store::MemoryStore;
use crate::adapters::memory::MemoryMailer;
use crate::domain::manifest::ManifestLimits;
use crate::domain::render::{Renderer, TemplateSource};
use crate::domain::revision::{manifest_key, pointers_prefix};
use crate::domain::route::{RouteSpec, RouteTable};
use crate::domain::table::TableSettings;
use crate::ports::DynDetailsSource;
use crate::ports::{FailureKind, StoreFailureKind};
use crate::worker::claims::Claims;
use crate::worker::dedupe::HandledEvents;
use crate::worker::details::{CacheLimits, DetailsReader};
use crate::worker::outcome::Outcome;
use crate::worker::rate::RateLimiter;
use crate::worker::Instruments;

/// The store after quilt3 pushed these revisions of `team/demo`, a minute apart.
fn pushed(revisions: &[&str]) -> Arc<MemoryStore> {
    let store = MemoryStore::new(4096);
    push(&store, revisions);
    Arc::new(store)
}

/// A pipeline whose template's subject shows what it was given: the route, the package's file
/// count and the number of added files, or `-` where there were no details.
fn build(
    routes: &[RouteSpec],
    store: &Arc<MemoryStore>,
) -> (Pipeline<MemoryMailer>, Arc<MemoryMailer>) {
    build_sharing(routes, store, None)
}

/// The same, its details reading table files for the routes that use them: those whose
/// template is in `table_templates`, or whose `package_pattern` mentions tables.
fn build_reading_tables(
    routes: &[RouteSpec],
    store: &Arc<MemoryStore>,
    table_templates: &[&str],
) -> (Pipeline<MemoryMailer>, Arc<MemoryMailer>) {
    build_with(routes, store, None, Some(table_templates))
}

/// The same, claiming in shared state when `claims` is given (one pipeline is one task).
fn build_sharing(
    routes: &[RouteSpec],
    store: &Arc<MemoryStore>,
    claims: Option<Claims>,
) -> (Pipeline<MemoryMailer>, Arc<MemoryMailer>) {
    build_with(routes, store, claims, None)
}

fn build_with(
    routes: &[RouteSpec],
    store: &Arc<MemoryStore>,
    claims: Option<Claims>,
    table_templates: Option<&[&str]>,
) -> (Pipeline<MemoryMailer>, Arc<MemoryMailer>) {
    let mut renderer = Renderer::new();
    renderer
        .add(
            "t",
            &TemplateSource {
                subject: "{{route}} files={{#if package}}{{package.files}}{{else}}-{{/if}} \
                          added={{#if changes.added}}{{changes.added.count}}{{else}}-{{/if}}"
                    .into(),
                html: "<p>{{handle}}</p>".into(),
                text: "{{handle}}".into(),
            },
        )
        .unwrap();
    let outbox = Arc::new(MemoryMailer::default());
    let reader = DetailsReader::new(
        Arc::clone(store),
        ManifestLimits::default(),
        CacheLimits::new(8, 64),
        None,
    );
    let mut table = RouteTable::compile(routes).unwrap();
    let reader = match table_templates {
        Some(templates) => {
            table.narrow_tables(routes, |t| templates.contains(&t));
            reader.with_tables(TableSettings::default())
        }
        None => reader,
    };
    let pipeline = Pipeline::new(PipelineParts {
        routes: table,
        renderer,
        catalog_host: None,
        default_from: "from@example.com".into(),
        contact_list: None,
        mailer: Arc::clone(&outbox),
        details: Some(Arc::new(reader) as Arc<dyn DynDetailsSource>),
        handled: HandledEvents::new(Duration::from_secs(3600), 100),
        claims,
        limiter: RateLimiter::new(0.0),
        instruments: Instruments::default(),
    });
    (pipeline, outbox)
}

fn event(id: &str, revision: &str) -> String {
    json!({
        "version": "0", "id": id, "detail-type": "package-revision", "source": "com.quiltdata",
        "account": "1", "time": "2024-01-01T00:00:00Z", "region": "us-east-1", "resources": [],
        "detail": {"version": "0.1", "type": "created", "bucket": BUCKET, "handle": HANDLE,
                   "topHash": top_hash(revision)}
    })
    .to_string()
}

#[tokio::test]
async fn templates_get_the_details_and_a_route_may_opt_out() {
    let store = pushed(&["same_hash", "unicode_nested"]);
    let routes = [
        RouteSpec::builder("with").build(),
        RouteSpec::builder("without").details(false).build(),
    ];
    let (pipeline, outbox) = build(&routes, &store);
    let (outcome, fields) = pipeline.process(&event("e1", "unicode_nested")).await;
    assert_eq!(outcome, Outcome::Sent);
    assert_eq!(fields.routes, ["with", "without"]);
    assert_eq!(
        outbox.subjects(),
        ["with files=8 added=4", "without files=- added=-"]
    );
    let manifest = manifest_key(&top_hash("unicode_nested"));
    assert_eq!(store.reads(&manifest), 1, "read once for the event");
}

#[tokio::test]
async fn no_route_that_uses_details_means_no_store_calls() {
    let store = pushed(&["same_hash", "unicode_nested"]);
    let (pipeline, outbox) = build(
        &[RouteSpec::builder("plain").details(false).build()],
        &store,
    );
    let (outcome, _) = pipeline.process(&event("e1", "unicode_nested")).await;
    assert_eq!(outcome, Outcome::Sent);
    assert_eq!(outbox.subjects(), ["plain files=- added=-"]);
    assert_eq!(
        store.reads(&manifest_key(&top_hash("unicode_nested"))),
        0,
        "today's cost"
    );
}

#[tokio::test]
async fn table_files_are_read_only_for_an_event_that_a_route_using_them_matches() {
    // add_files adds data/raw/2024/02.csv to first's files.
    let added = "team/demo/data/raw/2024/02.csv";
    let plain = [RouteSpec::builder("plain").build()];
    let store = pushed(&["first", "add_files"]);
    let (pipeline, outbox) = build_reading_tables(&plain, &store, &[]);
    let (outcome, _) = pipeline.process(&event("e1", "add_files")).await;
    assert_eq!(outcome, Outcome::Sent);
    assert_eq!(outbox.subjects(), ["plain files=7 added=2"]);
    assert_eq!(store.reads(added), 0, "its template does not show tables");

    let store = pushed(&["first", "add_files"]);
    let (pipeline, _) = build_reading_tables(&plain, &store, &["t"]);
    pipeline.process(&event("e1", "add_files")).await;
    assert_eq!(store.reads(added), 1, "its template shows tables");

    let filtering = [RouteSpec::builder("filtering")
        .package_pattern(json!({"changes": {"tables": {"status": ["added"]}}}))
        .build()];
    let store = pushed(&["first", "add_files"]);
    let (pipeline, _) = build_reading_tables(&filtering, &store, &[]);
    pipeline.process(&event("e1", "add_files")).await;
    assert_eq!(
        store.reads(added),
        1,
        "its package_pattern filters on tables"
    );
}

#[tokio::test]
async fn a_re_push_of_the_same_content_is_deleted_unsent_unless_a_route_wants_it() {
    // quilt3 re-pushed metadata_only's content: the same_hash revision has its top hash.
    assert_eq!(top_hash("metadata_only"), top_hash("same_hash"));
    let store = pushed(&["metadata_only", "same_hash"]);
    let (skipping, outbox) = build(&[RouteSpec::builder("r").build()], &store);
    let (outcome, _) = skipping.process(&event("e1", "same_hash")).await;
    assert_eq!(outcome, Outcome::Unchanged);
    assert!(outbox.subjects().is_empty());

    let (wanting, outbox) = build(
        &[
            RouteSpec::builder("skips").build(),
            RouteSpec::builder("wants").skip_unchanged(false).build(),
        ],
        &store,
    );
    let (outcome, _) = wanting.process(&event("e2", "same_hash")).await;
    assert_eq!(outcome, Outcome::Sent);
    assert_eq!(outbox.subjects().len(), 1);
    assert!(outbox.subjects()[0].starts_with("wants "));
}

#[tokio::test]
async fn a_package_pattern_filters_on_the_details() {
    let store = pushed(&["same_hash", "unicode_nested"]);
    let routes = [
        RouteSpec::builder("added")
            .package_pattern(json!({"changes": {"added": {"count": [{"numeric": [">", 0]}]}}}))
            .build(),
        RouteSpec::builder("release")
            .package_pattern(json!({"package": {"workflow": {"id": ["release"]}}}))
            .build(),
    ];
    let (pipeline, outbox) = build(&routes, &store);
    let (outcome, _) = pipeline.process(&event("e1", "unicode_nested")).await;
    assert_eq!(outcome, Outcome::Sent);
    assert_eq!(outbox.subjects(), ["added files=8 added=4"]);

    let (only_release, outbox) = build(&routes[1..], &store);
    let (outcome, _) = only_release.process(&event("e2", "unicode_nested")).await;
    assert_eq!(outcome, Outcome::Filtered, "nothing owed: deleted");
    assert!(outbox.subjects().is_empty());
}

#[tokio::test]
async fn a_transient_store_failure_keeps_the_message_but_routes_without_details_still_send() {
    let store = pushed(&["same_hash", "unicode_nested"]);
    let manifest = manifest_key(&top_hash("unicode_nested"));
    store.fail(&manifest, StoreFailureKind::Transient);
    let routes = [
        RouteSpec::builder("details").build(),
        RouteSpec::builder("plain").details(false).build(),
    ];
    let (pipeline, outbox) = build(&routes, &store);
    let (outcome, _) = pipeline.process(&event("e1", "unicode_nested")).await;
    let Outcome::Failed { kind, error, .. } = outcome else {
        panic!("kept for a retry, got {outcome:?}");
    };
    assert_eq!(kind, FailureKind::Transient);
    assert!(
        error.contains("route \"details\": package details"),
        "{error}"
    );
    assert_eq!(outbox.subjects(), ["plain files=- added=-"]);

    // The retry sends the route that waited, and only that one.
    store.heal(&manifest);
    let (outcome, _) = pipeline.process(&event("e1", "unicode_nested")).await;
    assert_eq!(outcome, Outcome::Sent);
    assert_eq!(
        outbox.subjects(),
        ["plain files=- added=-", "details files=8 added=4"]
    );
}

#[tokio::test]
async fn incomplete_details_still_send_but_fail_a_package_pattern_permanently() {
    let store = pushed(&["same_hash", "unicode_nested"]);
    let manifest = manifest_key(&top_hash("unicode_nested"));
    store.fail(&manifest, StoreFailureKind::Denied);
    let routes = [
        RouteSpec::builder("details").build(),
        RouteSpec::builder("prod")
            .package_pattern(json!({"package": {"user_meta": {"stage": ["prod"]}}}))
            .build(),
    ];
    let (pipeline, outbox) = build(&routes, &store);
    let (outcome, _) = pipeline.process(&event("e1", "unicode_nested")).await;
    let Outcome::Failed { kind, code, error } = outcome else {
        panic!("the pattern route cannot decide, got {outcome:?}");
    };
    assert_eq!(kind, FailureKind::Permanent);
    assert_eq!(code, "incomplete_details");
    assert!(
        error.contains("route \"prod\": package_pattern cannot be evaluated"),
        "{error}"
    );
    // The notification itself is not lost: it says what could not be read.
    assert_eq!(outbox.subjects(), ["details files=0 added=-"]);
}

/// A package whose metadata names its owners, pushed once.
fn owned_by(owners: Value) -> (Arc<MemoryStore>, String) {
    let hash = "ab".repeat(32);
    let header = json!({"version": "v0", "message": "owned", "user_meta": {"owners": owners}});
    let store = MemoryStore::new(4096);
    store.put(BUCKET, &manifest_key(&hash), format!("{header}\n"));
    store.put(
        BUCKET,
        &format!("{}1700000000", pointers_prefix(HANDLE)),
        hash.as_str(),
    );
    (Arc::new(store), hash)
}

fn event_for(id: &str, top_hash: &str) -> String {
    let mut body: Value = serde_json::from_str(&event(id, "same_hash")).unwrap();
    body["detail"]["topHash"] = json!(top_hash);
    body.to_string()
}

#[tokio::test]
async fn owners_named_in_the_metadata_get_the_mail_when_their_domain_is_allowed() {
    let (store, hash) = owned_by(json!([
        "ana@example.com",
        "eve@evil.test",
        "bo@example.com"
    ]));
    let owners = RouteSpec::builder("owners")
        .to_from("user_meta.owners")
        .allowed_domains(&["example.com"])
        .to(&["ops@example.org"])
        .build();
    let (pipeline, outbox) = build(&[owners], &store);
    let (outcome, _) = pipeline.process(&event_for("e1", &hash)).await;
    assert_eq!(outcome, Outcome::Sent);
    let sent = outbox.sent();
    assert_eq!(
        sent[0].to,
        ["ops@example.org", "ana@example.com", "bo@example.com"]
    );
}

/// SES refuses a whole SendEmail for one address that is not 7-bit ASCII, so the email the
/// pipeline builds holds only ASCII addresses, and a bad metadata address costs only itself.
#[tokio::test]
async fn every_address_sent_is_ascii_and_a_bad_owner_never_costs_the_fixed_recipients_their_mail() {
    let (store, hash) = owned_by(json!([
        "Jürgen <j@example.com>",
        "ana@bücher.example",
        "jürgen@example.com",
        "eve@evil.test, Bo <bo@example.com>",
        "x@example.com\r\nBcc: y@evil.test",
    ]));
    let owners = RouteSpec::builder("owners")
        .to_from("user_meta.owners")
        .allowed_domains(&["example.com", "bücher.example"])
        .to(&["ops@example.org"])
        .cc(&["Désk <desk@exämple.org>"])
        .reply_to(&["\"Ops, Team\" <ops@example.org>"])
        .from("Qüilt <q@example.org>")
        .build();
    let (pipeline, outbox) = build(&[owners], &store);
    let (outcome, _) = pipeline.process(&event_for("e1", &hash)).await;
    assert_eq!(outcome, Outcome::Sent);
    let sent = outbox.sent();
    let email = &sent[0];
    assert_eq!(
        email.to,
        [
            "ops@example.org",
            "=?utf-8?b?SsO8cmdlbg==?= <j@example.com>",
            "ana@xn--bcher-kva.example"
        ]
    );
    assert_eq!(email.cc, ["=?utf-8?b?RMOpc2s=?= <desk@xn--exmple-cua.org>"]);
    assert_eq!(email.reply_to, ["\"Ops, Team\" <ops@example.org>"]);
    assert_eq!(email.from, "=?utf-8?b?UcO8aWx0?= <q@example.org>");
    let addresses = std::iter::once(&email.from)
        .chain(&email.to)
        .chain(&email.cc)
        .chain(&email.bcc)
        .chain(&email.reply_to);
    for address in addresses {
        assert!(
            address
                .bytes()
                .all(|b| b.is_ascii() && !b.is_ascii_control()),
            "{address:?}"
        );
    }
}

#[tokio::test]
async fn a_route_whose_package_names_nobody_allowed_sends_nothing() {
    let (store, hash) = owned_by(json!(["eve@evil.test"]));
    let owners = RouteSpec::builder("owners")
        .to_from("user_meta.owners")
        .allowed_domains(&["example.com"])
        .to(&[])
        .build();
    let (pipeline, outbox) = build(&[owners], &store);
    let (outcome, _) = pipeline.process(&event_for("e1", &hash)).await;
    assert_eq!(outcome, Outcome::Filtered);
    assert!(outbox.subjects().is_empty());
}

#[tokio::test]
async fn a_route_with_a_topic_sends_with_its_contact_list_and_others_without() {
    let store = pushed(&["same_hash", "unicode_nested"]);
    let routes = [
        RouteSpec::builder("listed").topic("releases").build(),
        RouteSpec::builder("plain").build(),
    ];
    let (mut pipeline, outbox) = build(&routes, &store);
    pipeline.contact_list = Some("quilt".to_owned());
    let (outcome, _) = pipeline.process(&event("e1", "unicode_nested")).await;
    assert_eq!(outcome, Outcome::Sent);
    let sent = outbox.sent();
    let list = sent[0]
        .list
        .as_ref()
        .expect("the topic route names its list");
    assert_eq!(
        (list.contact_list.as_str(), list.topic.as_str()),
        ("quilt", "releases")
    );
    assert_eq!(sent[1].list, None);
}

#[tokio::test]
async fn ses_feedback_is_counted_per_configured_route_and_deleted_unsent() {
    use crate::domain::feedback::FeedbackKind;
    let store = pushed(&["same_hash"]);
    let (pipeline, outbox) = build(&[RouteSpec::builder("raw").build()], &store);
    let feedback = |route: &str| {
        json!({
            "source": "aws.ses", "detail-type": "Email Bounced", "id": "x",
            "detail": {"eventType": "Bounce",
                       "bounce": {"bounceType": "Permanent",
                                  "bouncedRecipients": [{"emailAddress": "gone@example.com"}]},
                       "mail": {"messageId": "m1", "tags": {"route": [route], "event_id": ["e9"]}}}
        })
        .to_string()
    };
    let (outcome, fields) = pipeline.process(&feedback("raw")).await;
    assert_eq!(outcome, Outcome::Feedback);
    assert_eq!(fields.event_id.as_deref(), Some("e9"));
    assert_eq!(fields.routes, ["raw"]);
    let (outcome, _) = pipeline.process(&feedback("forged-route")).await;
    assert_eq!(outcome, Outcome::Feedback);
    assert!(outbox.subjects().is_empty());
    assert_eq!(
        pipeline.instruments.metrics.feedback(),
        [
            (("(unknown)".to_owned(), FeedbackKind::Bounce), 1),
            (("raw".to_owned(), FeedbackKind::Bounce), 1),
        ]
    );
}

mod digests;
mod shared_state;
