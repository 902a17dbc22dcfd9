//! `quilt-notify render`: shows exactly what would be sent for an event, without sending.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::app;
use crate::config::Settings;
use crate::domain::event::PackageEvent;
use crate::domain::render::template_data;

/// Arguments of `quilt-notify render`.
#[derive(Debug, Args)]
pub struct RenderArgs {
    /// Configuration file (as for `run`).
    #[arg(short, long, env = "QUILT_NOTIFY_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// The event: a file holding an SQS message body (EventBridge envelope, or SNS-wrapped),
    /// or `-` for standard input.
    #[arg(short, long, value_name = "FILE")]
    pub event: PathBuf,
    /// Render only this route, even if its pattern does not match the event.
    #[arg(short, long, value_name = "NAME")]
    pub route: Option<String>,
    /// Write `<DIR>/<route>/{subject.txt,index.html,body.txt}` to open in a browser, instead of
    /// printing the subject and text part.
    #[arg(short, long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// Renders every matching route (or the named one) and prints or writes the result.
///
/// # Errors
/// Invalid configuration, unreadable or invalid event, unknown route, or a template that fails
/// on this event (the message names the template file, line and variable).
pub fn run(args: &RenderArgs) -> anyhow::Result<()> {
    let settings = Settings::load(args.config.as_deref())?;
    let compiled = app::compile(&settings)?;
    let body = if args.event.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).context("reading the event from stdin")?
    } else {
        std::fs::read_to_string(&args.event)
            .with_context(|| format!("reading {}", args.event.display()))?
    };
    let event = PackageEvent::parse(&body).context("the event")?;

    let routes: Vec<_> = match &args.route {
        Some(name) => {
            let route = compiled
                .routes
                .routes()
                .iter()
                .find(|r| &r.name == name)
                .with_context(|| format!("no route named \"{name}\""))?;
            if !route.pattern.matches(event.envelope()) {
                eprintln!(
                    "note: route \"{name}\" does not match this event (first mismatch at `{}`); rendering anyway",
                    route.pattern.first_mismatch(event.envelope()).unwrap_or_default()
                );
            }
            vec![route]
        }
        None => compiled.routes.matching(event.envelope()).collect(),
    };
    if routes.is_empty() {
        println!("no route matches this event: nothing would be sent");
        return Ok(());
    }

    for route in routes {
        let data = template_data(&event, settings.catalog.host.as_deref(), &route.name);
        let email = compiled
            .renderer
            .render(&route.template, data)
            .with_context(|| format!("route \"{}\"", route.name))?;
        let to: Vec<&str> = route.recipients.to.iter().map(|a| a.as_str()).collect();
        match &args.out {
            Some(dir) => {
                let dir = dir.join(&route.name);
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
                for (file, text) in [
                    ("subject.txt", &email.subject),
                    ("index.html", &email.html),
                    ("body.txt", &email.text),
                ] {
                    let path = dir.join(file);
                    std::fs::write(&path, text)
                        .with_context(|| format!("writing {}", path.display()))?;
                }
                println!(
                    "route \"{}\": {}",
                    route.name,
                    dir.join("index.html").display()
                );
            }
            None => {
                println!("=== route \"{}\" → {}", route.name, to.join(", "));
                println!("Subject: {}\n", email.subject);
                println!("{}", email.text);
            }
        }
    }
    Ok(())
}
