//! The CloudFormation stack (`deploy/quilt-notify.yaml`), resolved for sample parameters by
//! `tests/deploy_data/deploy_check.py`, linted by cfn-lint, and its worker configuration loaded
//! and compiled by the crate.

use std::collections::{BTreeSet, HashMap};

use serde_json::{json, Value};

use quilt_notify::app;
use quilt_notify::config::Settings;

use crate::{deploy_check, read, repo, run, venv_python, IMAGE_BINARY};

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
                    &json!([
                        "arn:*:s3:::example/.quilt/*",
                        "arn:*:s3:::example/*README.md",
                        "arn:*:s3:::example/*.parquet",
                        "arn:*:s3:::example/*.csv",
                        "arn:*:s3:::example/*.tsv",
                        "arn:*:s3:::example/*.csv.gz",
                        "arn:*:s3:::example/*.tsv.gz"
                    ]),
                    "{action}: manifests, revision pointers, READMEs and table files of the package bucket only"
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
                    "arn:*:s3:::quilt-data/*README.md",
                    "arn:*:s3:::quilt-data/*.parquet",
                    "arn:*:s3:::quilt-data/*.csv",
                    "arn:*:s3:::quilt-data/*.tsv",
                    "arn:*:s3:::quilt-data/*.csv.gz",
                    "arn:*:s3:::quilt-data/*.tsv.gz"
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
            "arn:*:s3:::curated.data/*README.md",
            "arn:*:s3:::raw-data/*.parquet",
            "arn:*:s3:::curated.data/*.parquet",
            "arn:*:s3:::raw-data/*.csv",
            "arn:*:s3:::curated.data/*.csv",
            "arn:*:s3:::raw-data/*.tsv",
            "arn:*:s3:::curated.data/*.tsv",
            "arn:*:s3:::raw-data/*.csv.gz",
            "arn:*:s3:::curated.data/*.csv.gz",
            "arn:*:s3:::raw-data/*.tsv.gz",
            "arn:*:s3:::curated.data/*.tsv.gz"
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
