//! `quilt-notify topics sync`: makes the SES contact list (`ses.contact_list`) hold one topic per
//! route `topic`, so that SES can add one-click unsubscribe to those routes' mail. Idempotent:
//! it adds what is missing and never removes a topic (recipients' choices hang on it).

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::adapters::aws::admin::{ListTopic, SesAdmin};
use crate::app;
use crate::config::Settings;
use crate::domain::route::RouteSpec;

/// Arguments of `quilt-notify topics`.
#[derive(Debug, Args)]
pub struct TopicsArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: TopicsCommand,
}

/// The `topics` sub-commands.
#[derive(Debug, Subcommand)]
pub enum TopicsCommand {
    /// Create `ses.contact_list` if it does not exist and add a topic for every route `topic`
    /// it lacks; print each change. Topics no route names are kept (and reported), because
    /// recipients' unsubscribes belong to them. Needs ses:GetContactList, ses:CreateContactList
    /// and ses:UpdateContactList.
    Sync(SyncArgs),
}

/// Arguments of `quilt-notify topics sync`.
#[derive(Debug, Args)]
pub struct SyncArgs {
    /// Configuration file (as for `run`): the routes, `ses.contact_list`, endpoint and region.
    #[arg(short, long, env = "QUILT_NOTIFY_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Print what would change, change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// What `sync` does to the contact list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// The list does not exist: create it with these topics.
    Create(Vec<ListTopic>),
    /// Add these topics; the list keeps the others.
    Add {
        /// Topics to add.
        missing: Vec<ListTopic>,
        /// Every topic after the change, as UpdateContactList needs it.
        all: Vec<ListTopic>,
    },
    /// Nothing to change.
    Nothing,
}

/// The topics the routes name, one per name, in configuration order.
pub fn wanted(routes: &[RouteSpec]) -> Vec<ListTopic> {
    let mut topics: Vec<ListTopic> = Vec::new();
    for route in routes {
        let Some(name) = route
            .topic
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
        else {
            continue;
        };
        match topics.iter_mut().find(|t| t.name == name) {
            Some(topic) => topic.description.push_str(&format!(", {}", route.name)),
            None => topics.push(ListTopic {
                name: name.to_owned(),
                display_name: name.to_owned(),
                description: format!("quilt-notify routes: {}", route.name),
            }),
        }
    }
    topics
}

/// Compares the list as it is with the topics wanted.
pub fn plan(existing: Option<&[ListTopic]>, wanted: &[ListTopic]) -> Plan {
    let Some(existing) = existing else {
        return Plan::Create(wanted.to_vec());
    };
    let missing: Vec<ListTopic> = wanted
        .iter()
        .filter(|w| !existing.iter().any(|e| e.name == w.name))
        .cloned()
        .collect();
    if missing.is_empty() {
        return Plan::Nothing;
    }
    let all = existing.iter().chain(&missing).cloned().collect();
    Plan::Add { missing, all }
}

/// Runs a `topics` sub-command; Ok(true) when the list is (or, with `--dry-run`, would be) as
/// the routes want it.
///
/// # Errors
/// Invalid configuration, no contact list configured, or an SES call failed.
pub fn run(args: &TopicsArgs) -> anyhow::Result<bool> {
    let TopicsCommand::Sync(sync) = &args.command;
    let settings = Settings::load(sync.config.as_deref())?;
    let contact_list = settings.ses.contact_list.clone().context(
        "ses.contact_list is not set: name the SES contact list the routes' topics belong to",
    )?;
    let wanted = wanted(&settings.routes);
    if wanted.is_empty() {
        println!("no route names a topic: nothing to sync");
        return Ok(true);
    }
    super::block_on(async {
        let sdk = app::sdk_config(&settings).await?;
        let ses = SesAdmin::new(app::ses_client(
            &sdk,
            &settings,
            &app::skew_watch(&settings),
        ));
        let existing = ses.topics(&contact_list).await?;
        let unused: Vec<&str> = existing
            .iter()
            .flatten()
            .filter(|e| !wanted.iter().any(|w| w.name == e.name))
            .map(|e| e.name.as_str())
            .collect();
        let verb = if sync.dry_run { "would " } else { "" };
        match plan(existing.as_deref(), &wanted) {
            Plan::Create(topics) => {
                if !sync.dry_run {
                    ses.create(&contact_list, &topics).await?;
                }
                let names: Vec<&str> = topics.iter().map(|t| t.name.as_str()).collect();
                println!(
                    "{verb}create contact list {contact_list} with topics {}",
                    names.join(", ")
                );
            }
            Plan::Add { missing, all } => {
                if !sync.dry_run {
                    ses.set_topics(&contact_list, &all).await?;
                }
                for topic in missing {
                    println!("{verb}add topic {} to {contact_list}", topic.name);
                }
            }
            Plan::Nothing => {
                println!("contact list {contact_list} already has every route's topic")
            }
        }
        if !unused.is_empty() {
            println!("kept topics no route names: {}", unused.join(", "));
        }
        Ok(true)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn route(name: &str, topic: Option<&str>) -> RouteSpec {
        let spec = RouteSpec::builder(name)
            .to(&["a@b.c"])
            .pattern(json!({"source": ["x"]}));
        match topic {
            Some(topic) => spec.topic(topic),
            None => spec,
        }
        .build()
    }

    fn names(topics: &[ListTopic]) -> Vec<&str> {
        topics.iter().map(|t| t.name.as_str()).collect()
    }

    #[test]
    fn each_topic_is_wanted_once_and_says_which_routes_use_it() {
        let topics = wanted(&[
            route("raw", Some("releases")),
            route("plain", None),
            route("curated", Some("releases")),
            route("ops", Some("ops")),
        ]);
        assert_eq!(names(&topics), ["releases", "ops"]);
        assert_eq!(topics[0].description, "quilt-notify routes: raw, curated");
    }

    #[test]
    fn a_missing_list_is_created_an_incomplete_one_gains_topics_and_nothing_is_removed() {
        let want = wanted(&[route("a", Some("releases")), route("b", Some("ops"))]);
        assert_eq!(plan(None, &want), Plan::Create(want.clone()));
        let old = wanted(&[route("x", Some("retired")), route("a", Some("releases"))]);
        let Plan::Add { missing, all } = plan(Some(&old), &want) else {
            panic!("topics to add");
        };
        assert_eq!(names(&missing), ["ops"]);
        assert_eq!(names(&all), ["retired", "releases", "ops"]);
        assert_eq!(plan(Some(&all), &want), Plan::Nothing);
    }
}
