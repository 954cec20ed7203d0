//! The SAM template (`infra/template.yaml`) held to the code and the design: each function's
//! environment is exactly its contract (`nylas_sync::contract`), queues outlast their consumers
//! and redrive, policies name their resources, every failure mode has an alarm, and deploying the
//! template to moto gives tables, queues, bucket and secret from which all four functions start.
//!
//! The template is read as AWS reads it: translated to plain CloudFormation by the SAM
//! translator (`tests/local-stack/deploy-to-moto --translate-only`), so Globals are merged in.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use aws_sdk_dynamodb::types::{KeyType, ScalarAttributeType};
use aws_sdk_sqs::types::QueueAttributeName;
use nylas_sync::contract::{self, COMMON};
use serde_json::Value;
use support::*;

const BINARIES: [&str; 4] = ["ingest", "consumer", "scheduler", "reconciler"];
/// Set only on a laptop or in tests: in AWS the secrets come from Secrets Manager and the SDK
/// from its real endpoints.
const LOCAL_ONLY: [&str; 3] = ["NYLAS_API_KEY", "NYLAS_WEBHOOK_SECRETS", "AWS_ENDPOINT_URL"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs `tests/local-stack/deploy-to-moto` with `args` and parses its JSON output. The template
/// is `infra/template.yaml`, or the file `NYLAS_SYNC_TEMPLATE` names (to try a variant).
fn deploy_to_moto(args: &[&str]) -> Value {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let template = std::env::var("NYLAS_SYNC_TEMPLATE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root().join("infra/template.yaml"));
    let out = Command::new(&python)
        .arg(root().join("tests/local-stack/deploy-to-moto"))
        .arg("--template")
        .arg(template)
        .args(args)
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    assert!(
        out.status.success(),
        "deploy-to-moto {args:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("deploy-to-moto prints JSON")
}

/// Deploys the template to moto as the stack `stack` (off the async runtime: it waits on Python).
async fn deploy_stack(stack: &str) -> Value {
    let stack = stack.to_string();
    tokio::task::spawn_blocking(move || deploy_to_moto(&["--stack-name", &stack]))
        .await
        .expect("deploy-to-moto thread")
}

/// The template as plain CloudFormation (translated once per test binary).
fn cfn() -> &'static Value {
    static CFN: OnceLock<Value> = OnceLock::new();
    CFN.get_or_init(|| deploy_to_moto(&["--translate-only"]))
}

fn resources() -> &'static serde_json::Map<String, Value> {
    cfn()["Resources"].as_object().expect("Resources")
}

fn of_type(ty: &str) -> Vec<(&'static str, &'static Value)> {
    resources()
        .iter()
        .filter(|(_, r)| r["Type"] == ty)
        .map(|(k, r)| (k.as_str(), r))
        .collect()
}

/// The Lambda functions by binary name (`Metadata.BuildProperties.Binary`).
fn functions() -> BTreeMap<&'static str, (&'static str, &'static Value)> {
    of_type("AWS::Lambda::Function")
        .into_iter()
        .map(|(id, r)| {
            let binary = r["Metadata"]["BuildProperties"]["Binary"]
                .as_str()
                .unwrap_or_else(|| panic!("{id} has no Metadata.BuildProperties.Binary"));
            (binary, (id, &r["Properties"]))
        })
        .collect()
}

fn env_names(props: &Value) -> BTreeSet<&str> {
    props["Environment"]["Variables"]
        .as_object()
        .map(|m| m.keys().map(String::as_str).collect())
        .unwrap_or_default()
}

/// A literal environment value (a number or a string in the template).
fn env_literal(props: &Value, name: &str) -> Option<u64> {
    match &props["Environment"]["Variables"][name] {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

fn parameter_default(name: &str) -> String {
    let d = &cfn()["Parameters"][name]["Default"];
    d.as_str()
        .map(str::to_string)
        .unwrap_or_else(|| d.to_string())
}

/// The logical id a `{"Ref": id}` or `{"Fn::GetAtt": [id, attr]}` points at.
fn target(v: &Value) -> &str {
    v["Ref"]
        .as_str()
        .or_else(|| v["Fn::GetAtt"][0].as_str())
        .unwrap_or_else(|| panic!("not a reference: {v}"))
}

#[test]
fn each_function_environment_is_exactly_its_contract() {
    let functions = functions();
    assert_eq!(
        functions.keys().copied().collect::<Vec<_>>(),
        {
            let mut b = BINARIES.to_vec();
            b.sort();
            b
        },
        "the template's functions"
    );
    for (binary, (id, props)) in &functions {
        let own = contract::for_function(binary).expect("a contract for every function");
        let known: BTreeSet<&str> = own.iter().chain(COMMON).map(|v| v.name).collect();
        let set = env_names(props);
        let unknown: Vec<_> = set.difference(&known).collect();
        assert!(
            unknown.is_empty(),
            "{id} ({binary}) sets variables its code does not read: {unknown:?}"
        );
        let missing: Vec<_> = own
            .iter()
            .chain(COMMON)
            .filter(|v| v.required && !set.contains(v.name))
            .map(|v| v.name)
            .collect();
        assert!(
            missing.is_empty(),
            "{id} ({binary}) lacks required variables {missing:?}"
        );
        for local in LOCAL_ONLY {
            assert!(
                !set.contains(local),
                "{id} sets {local}, which is for local runs only"
            );
        }
        assert!(
            set.contains("SECRETS_ARN"),
            "{id}: in AWS the secrets come from SECRETS_ARN"
        );
    }
}

#[test]
fn functions_are_arm64_cargo_lambda_builds_on_provided_al2023() {
    for (binary, (id, props)) in functions() {
        assert_eq!(props["Runtime"], "provided.al2023", "{id}");
        assert_eq!(props["Architectures"], serde_json::json!(["arm64"]), "{id}");
        assert_eq!(props["Handler"], "bootstrap", "{id}");
        assert_eq!(
            resources()[id]["Metadata"]["BuildMethod"],
            "rust-cargolambda",
            "{id}"
        );
        let timeout = props["Timeout"].as_u64().expect("explicit Timeout");
        let memory = props["MemorySize"].as_u64().expect("explicit MemorySize");
        assert!((1..=900).contains(&timeout), "{binary}: timeout {timeout}");
        assert!(
            (128..=10_240).contains(&memory),
            "{binary}: memory {memory}"
        );
    }
    // The ingest answers (503 at worst) before it can time out, and before Nylas gives up (10 s).
    let (_, ingest) = functions()["ingest"];
    let timeout_ms = ingest["Timeout"].as_u64().unwrap() * 1000;
    let enqueue_ms = env_literal(ingest, "ENQUEUE_TIMEOUT_MS").unwrap_or(6_000);
    assert!(enqueue_ms + 1_000 < timeout_ms && timeout_ms <= 10_000);
    // A reconcile run holds its grant's lease for as long as the function may run.
    let (_, reconciler) = functions()["reconciler"];
    let lease = env_literal(reconciler, "LEASE_SECONDS").unwrap_or(900);
    assert!(lease >= reconciler["Timeout"].as_u64().unwrap());
}

/// `sam build` runs `cargo lambda build --bin <Binary>` at the workspace's root, naming no
/// package: cargo then builds the workspace's default members and unifies the dependencies'
/// features over them. They must be the template's functions and nothing else, or the test
/// harnesses' features (tokio's process and signal drivers, for one) end up in every bootstrap.
#[test]
fn a_build_that_names_no_package_selects_exactly_the_templates_functions() {
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).expect("Cargo.toml");
    let list = manifest
        .split_once("\ndefault-members = [")
        .and_then(|(_, rest)| rest.split_once(']'))
        .map(|(list, _)| list)
        .expect("the workspace names its default-members");
    let members: BTreeSet<&str> = list
        .lines()
        .map(|l| l.trim().trim_end_matches(','))
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.trim_matches('"'))
        .collect();
    let expected: BTreeSet<String> = functions()
        .keys()
        .map(|binary| format!("functions/{binary}"))
        .collect();
    assert_eq!(
        members,
        expected.iter().map(String::as_str).collect::<BTreeSet<_>>()
    );
}

#[test]
fn sqs_event_sources_report_item_failures_and_queues_outlast_their_consumers() {
    let functions = functions();
    let by_id: HashMap<&str, &str> = functions.iter().map(|(b, (id, _))| (*id, *b)).collect();
    let mut consumed = BTreeMap::new();
    for (id, esm) in of_type("AWS::Lambda::EventSourceMapping") {
        let p = &esm["Properties"];
        let function = target(&p["FunctionName"]);
        let binary = by_id[function];
        let queue = target(&p["EventSourceArn"]);
        let q = &resources()[queue]["Properties"];
        assert_eq!(resources()[queue]["Type"], "AWS::SQS::Queue", "{id}");
        assert_eq!(
            p["FunctionResponseTypes"],
            serde_json::json!(["ReportBatchItemFailures"]),
            "{id}: one bad record must not fail its batch"
        );
        let timeout = functions[binary].1["Timeout"].as_u64().unwrap();
        let visibility = q["VisibilityTimeout"].as_u64().expect("VisibilityTimeout");
        assert!(
            visibility >= 6 * timeout,
            "{queue}: visibility {visibility} s < 6 x {binary}'s {timeout} s"
        );
        let redrive = &q["RedrivePolicy"];
        let max_receive = redrive["maxReceiveCount"]
            .as_u64()
            .expect("maxReceiveCount");
        assert!((2..=10).contains(&max_receive), "{queue}: {max_receive}");
        let dlq = target(&redrive["deadLetterTargetArn"]);
        assert_eq!(resources()[dlq]["Type"], "AWS::SQS::Queue");
        let retention = |q: &Value| q["MessageRetentionPeriod"].as_u64().unwrap_or(345_600);
        assert!(
            retention(&resources()[dlq]["Properties"]) > retention(q),
            "{dlq} must keep messages longer than {queue}"
        );
        assert!(
            p["BatchSize"].as_u64().is_some(),
            "{id}: explicit BatchSize"
        );
        consumed.insert(binary, (queue, p.clone()));
    }
    assert_eq!(
        consumed.keys().copied().collect::<Vec<_>>(),
        ["consumer", "reconciler"]
    );
    assert_eq!(consumed["consumer"].0, "NotificationsQueue");
    assert_eq!(consumed["reconciler"].0, "ReconcileQueue");
    // The reconciler's concurrency is bounded: that bounds the load on Nylas.
    let scaling = &consumed["reconciler"].1["ScalingConfig"]["MaximumConcurrency"];
    assert_eq!(target(scaling), "ReconcilerMaxConcurrency");
    let max: u64 = parameter_default("ReconcilerMaxConcurrency")
        .parse()
        .unwrap();
    assert!((2..=20).contains(&max));
    // The ingest writes where the consumer reads.
    let (_, ingest) = functions["ingest"];
    assert_eq!(
        target(&ingest["Environment"]["Variables"]["NOTIFICATIONS_QUEUE_URL"]),
        "NotificationsQueue"
    );
}

#[test]
fn the_scheduler_runs_every_thirty_minutes_by_default_and_knows_its_interval() {
    let (id, scheduler) = functions()["scheduler"];
    let rules: Vec<_> = of_type("AWS::Events::Rule")
        .into_iter()
        .filter(|(_, r)| {
            r["Properties"]["Targets"]
                .as_array()
                .is_some_and(|t| t.iter().any(|t| target(&t["Arn"]) == id))
        })
        .collect();
    assert_eq!(rules.len(), 2, "the reconcile tick and the destination's");
    let schedule = |r: &serde_json::Value| r["Properties"]["ScheduleExpression"]["Fn::Sub"].clone();
    let tick = rules
        .iter()
        .find(|(_, r)| schedule(r) == "rate(${ReconcileIntervalMinutes} minutes)")
        .expect("the reconcile tick");
    let input = |r: &serde_json::Value| r["Properties"]["Targets"][0]["Input"].clone();
    assert!(input(tick.1).is_null(), "the tick fans out");
    let watch = rules
        .iter()
        .find(|(_, r)| schedule(r) == "rate(${DestinationWatchMinutes} minutes)")
        .expect("the destination's schedule");
    let said: serde_json::Value =
        serde_json::from_str(input(watch.1).as_str().expect("an input")).expect("JSON");
    assert_eq!(
        nylas_sync::scheduler::Tick::of(&said),
        nylas_sync::scheduler::Tick::WatchOnly
    );
    assert_eq!(parameter_default("DestinationWatchMinutes"), "5");
    assert_eq!(parameter_default("ReconcileIntervalMinutes"), "30");
    // Each allowed interval maps to the scheduler's RECONCILE_INTERVAL_SECONDS and a daily sweep.
    let interval = &scheduler["Environment"]["Variables"]["RECONCILE_INTERVAL_SECONDS"];
    assert_eq!(interval["Fn::FindInMap"][0], "ReconcileInterval");
    let allowed = cfn()["Parameters"]["ReconcileIntervalMinutes"]["AllowedValues"]
        .as_array()
        .unwrap();
    for minutes in allowed {
        let m = minutes.as_str().unwrap();
        let row = &cfn()["Mappings"]["ReconcileInterval"][m];
        let minutes: u64 = m.parse().unwrap();
        assert_eq!(row["Seconds"], (minutes * 60).to_string(), "{m}");
        let sweep: u64 = row["SweepEveryRuns"].as_str().unwrap().parse().unwrap();
        assert_eq!(sweep * minutes, 1440, "{m}: the drift sweep runs daily");
    }
}

#[test]
fn policies_name_their_resources_and_grant_only_what_each_function_calls() {
    let expected: BTreeMap<&str, &[&str]> = BTreeMap::from([
        (
            "ingest",
            &[
                "s3:PutObject",
                "secretsmanager:GetSecretValue",
                "sqs:SendMessage",
            ][..],
        ),
        (
            "consumer",
            &[
                "dynamodb:BatchGetItem",
                "dynamodb:GetItem",
                "dynamodb:PutItem",
                "dynamodb:Query",
                "dynamodb:UpdateItem",
                "s3:DeleteObject",
                "s3:GetObject",
                "s3:PutObject",
                "secretsmanager:GetSecretValue",
                "sqs:ChangeMessageVisibility",
                "sqs:DeleteMessage",
                "sqs:GetQueueAttributes",
                "sqs:GetQueueUrl",
                "sqs:ReceiveMessage",
                "sqs:SendMessage",
            ][..],
        ),
        (
            "scheduler",
            &[
                "dynamodb:GetItem",
                "dynamodb:PutItem",
                "dynamodb:Scan",
                "secretsmanager:GetSecretValue",
                "sqs:SendMessage",
            ][..],
        ),
        (
            "reconciler",
            &[
                "dynamodb:BatchGetItem",
                "dynamodb:BatchWriteItem",
                "dynamodb:GetItem",
                "dynamodb:PutItem",
                "dynamodb:Query",
                "dynamodb:UpdateItem",
                "s3:DeleteObject",
                "s3:GetObject",
                "s3:ListBucket",
                "s3:PutObject",
                "secretsmanager:GetSecretValue",
                "sqs:DeleteMessage",
                "sqs:GetQueueAttributes",
                "sqs:ReceiveMessage",
                "sqs:SendMessage",
            ][..],
        ),
    ]);
    for (binary, (id, props)) in functions() {
        let role = target(&props["Role"]);
        let role = &resources()[role]["Properties"];
        // Only the logs baseline among managed policies (the SQS managed policy would grant
        // receive/delete on every queue in the account).
        assert_eq!(
            role["ManagedPolicyArns"],
            serde_json::json!(["arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"]),
            "{id}"
        );
        let mut actions = BTreeSet::new();
        for policy in role["Policies"].as_array().unwrap() {
            for st in policy["PolicyDocument"]["Statement"].as_array().unwrap() {
                assert_eq!(st["Effect"], "Allow");
                let list = |v: &Value| -> Vec<Value> {
                    v.as_array().cloned().unwrap_or_else(|| vec![v.clone()])
                };
                for a in list(&st["Action"]) {
                    let a = a.as_str().unwrap().to_string();
                    assert!(!a.contains('*'), "{id}: wildcard action {a}");
                    actions.insert(a);
                }
                for r in list(&st["Resource"]) {
                    assert!(
                        r.is_object(),
                        "{id}: resource {r} is not one of the stack's resources"
                    );
                    if let Some(sub) = r["Fn::Sub"].as_str() {
                        assert!(
                            sub.ends_with("/notifications/*")
                                || sub.ends_with("/bodies/*")
                                || sub.ends_with("/objects/*")
                                || sub.ends_with("/index/by_date"),
                            "{id}: object access limited to a prefix, not {sub}"
                        );
                    }
                }
            }
        }
        let actions: Vec<_> = actions.iter().map(String::as_str).collect();
        assert_eq!(actions, expected[binary], "{id}'s actions");
    }
}

#[test]
fn every_failure_mode_has_an_alarm_that_can_notify_the_topic() {
    let alarms = of_type("AWS::CloudWatch::Alarm");
    let on = |namespace: &str, metric: &str| -> BTreeSet<&str> {
        alarms
            .iter()
            .filter(|(_, a)| {
                a["Properties"]["Namespace"] == namespace && a["Properties"]["MetricName"] == metric
            })
            .map(|(_, a)| target(&a["Properties"]["Dimensions"][0]["Value"]))
            .collect()
    };
    let queues: BTreeSet<&str> = of_type("AWS::Lambda::EventSourceMapping")
        .iter()
        .map(|(_, m)| target(&m["Properties"]["EventSourceArn"]))
        .collect();
    let dlqs: BTreeSet<&str> = queues
        .iter()
        .map(|q| target(&resources()[*q]["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]))
        .collect();
    assert_eq!(on("AWS/SQS", "ApproximateNumberOfMessagesVisible"), dlqs);
    assert_eq!(on("AWS/SQS", "ApproximateAgeOfOldestMessage"), queues);
    let function_ids: BTreeSet<&str> = functions().values().map(|(id, _)| *id).collect();
    assert_eq!(on("AWS/Lambda", "Errors"), function_ids);

    // The functions' own metrics (EMF), by the names, namespace and dimension they publish:
    // reconcile-recovered counts (the missed-webhook signal) and the consumer's lag p99.
    assert_eq!(
        parameter_default("MetricsNamespace"),
        nylas_sync::metrics::DEFAULT_NAMESPACE
    );
    let own = |metric: &str| -> &Value {
        let found: Vec<_> = alarms
            .iter()
            .filter(|(_, a)| a["Properties"]["MetricName"] == metric)
            .collect();
        assert_eq!(found.len(), 1, "one alarm on {metric}");
        let p = &found[0].1["Properties"];
        assert_eq!(target(&p["Namespace"]), "MetricsNamespace", "{metric}");
        p
    };
    let dimension = |function: &str| serde_json::json!([{"Name": nylas_sync::metrics::FUNCTION_DIMENSION, "Value": function}]);
    let recovered = own(nylas_sync::reconcile::metric::OBJECTS_RECOVERED);
    assert_eq!(recovered["Dimensions"], dimension("reconciler"));
    assert_eq!(recovered["Statistic"], "Sum");
    assert_eq!(target(&recovered["Threshold"]), "RecoveredAlarmThreshold");
    assert_eq!(
        target(&recovered["EvaluationPeriods"]),
        "RecoveredAlarmPeriods"
    );
    let lag = own(nylas_sync::metrics::names::CHANGE_TO_STORE_LAG);
    assert_eq!(lag["Dimensions"], dimension("consumer"));
    assert_eq!(lag["ExtendedStatistic"], "p99");
    assert_eq!(target(&lag["Threshold"]), "LagAlarmSeconds");

    for (id, a) in &alarms {
        let actions = &a["Properties"]["AlarmActions"]["Fn::If"];
        assert_eq!(actions[0], "HasAlarmTopic", "{id}");
        assert_eq!(target(&actions[1][0]), "AlarmTopicArn", "{id}");
        assert_eq!(a["Properties"]["TreatMissingData"], "notBreaching", "{id}");
    }
}

#[test]
fn tables_and_bucket_are_durable_and_private() {
    for (id, t) in of_type("AWS::DynamoDB::Table") {
        let p = &t["Properties"];
        assert_eq!(p["BillingMode"], "PAY_PER_REQUEST", "{id}");
        assert_eq!(
            p["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"], true,
            "{id}"
        );
        assert_eq!(p["TimeToLiveSpecification"]["AttributeName"], "expires_at");
        assert_eq!(p["SSESpecification"]["SSEEnabled"], true, "{id}");
        assert_eq!(t["DeletionPolicy"], "Retain", "{id} holds synced data");
    }
    let buckets = of_type("AWS::S3::Bucket");
    assert_eq!(buckets.len(), 1);
    let p = &buckets[0].1["Properties"];
    for flag in [
        "BlockPublicAcls",
        "BlockPublicPolicy",
        "IgnorePublicAcls",
        "RestrictPublicBuckets",
    ] {
        assert_eq!(p["PublicAccessBlockConfiguration"][flag], true, "{flag}");
    }
    assert!(p["BucketEncryption"].is_object());
    let rules = p["LifecycleConfiguration"]["Rules"].as_array().unwrap();
    assert!(rules
        .iter()
        .any(|r| r["Prefix"] == "notifications/" && r["ExpirationInDays"].is_object()));
    assert!(
        !rules.iter().any(|r| r["Prefix"] == "bodies/"),
        "bodies are part of the store"
    );
}

#[test]
fn the_objects_table_has_the_date_index_the_sweep_reads() {
    use nylas_sync::store::{BY_DATE_INDEX, BY_DATE_PROJECTION, DATE_ATTRIBUTE};
    let table = &resources()["ObjectsTable"]["Properties"];
    let index = table["GlobalSecondaryIndexes"]
        .as_array()
        .expect("indexes")
        .iter()
        .find(|i| i["IndexName"] == BY_DATE_INDEX)
        .expect("the date index");
    assert_eq!(index["KeySchema"][0]["AttributeName"], "grant_id");
    assert_eq!(index["KeySchema"][1]["AttributeName"], DATE_ATTRIBUTE);
    assert_eq!(index["Projection"]["ProjectionType"], "INCLUDE");
    let projected: Vec<&str> = index["Projection"]["NonKeyAttributes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(projected, BY_DATE_PROJECTION);
    assert!(table["AttributeDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["AttributeName"] == DATE_ATTRIBUTE && a["AttributeType"] == "N"));
}

#[test]
fn a_claim_checked_payload_outlives_every_message_that_points_to_it() {
    // Lossless issue, defect 17: payloads expired while their messages (in the DLQ) lived on.
    let bucket = of_type("AWS::S3::Bucket")[0].1;
    let rules = bucket["Properties"]["LifecycleConfiguration"]["Rules"]
        .as_array()
        .unwrap();
    let rule = rules
        .iter()
        .find(|r| r["Prefix"] == "notifications/")
        .expect("notifications/ expire");
    assert_eq!(target(&rule["ExpirationInDays"]), "PayloadRetentionDays");
    let param = &cfn()["Parameters"]["PayloadRetentionDays"];
    let days = |v: &Value| v.as_u64().or_else(|| v.as_str()?.parse().ok()).unwrap();
    let shortest = days(&param["MinValue"]).min(days(&param["Default"]));
    // A message's DLQ stay ends its retention after its enqueue; a rate-limited record's deferred
    // copy is a new message, sent while the original was still in the queue (up to the queue's
    // retention after it), and the deferrals add 8 x 15 min by default.
    let queue = &resources()["NotificationsQueue"]["Properties"];
    let dlq = target(&queue["RedrivePolicy"]["deadLetterTargetArn"]);
    let retention = |q: &Value| q["MessageRetentionPeriod"].as_u64().unwrap_or(345_600);
    let longest_message = retention(queue) + retention(&resources()[dlq]["Properties"]);
    let policy = nylas_sync::queue::RedeliveryPolicy::default();
    let deferrals = u64::from(policy.max_deferrals) * u64::from(nylas_sync::queue::MAX_DELAY_S);
    assert!(
        shortest * 86_400 >= longest_message + deferrals,
        "payloads kept {shortest} days, messages up to {longest_message} s + {deferrals} s"
    );
}

#[test]
fn the_consumer_may_defer_a_record_to_its_own_queue() {
    // Lossless issue, defect 12: a rate-limited record is re-sent to the notifications queue
    // with a delay instead of spending its receives.
    let (_, consumer) = functions()["consumer"];
    let role = &resources()[target(&consumer["Role"])]["Properties"];
    let may_send_to_notifications = role["Policies"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["PolicyDocument"]["Statement"].as_array().unwrap())
        .any(|st| {
            let actions = st["Action"]
                .as_array()
                .cloned()
                .unwrap_or_else(|| vec![st["Action"].clone()]);
            actions.iter().any(|a| a == "sqs:SendMessage")
                && st["Resource"]["Fn::GetAtt"][0] == "NotificationsQueue"
        });
    assert!(may_send_to_notifications);
}

/// Deploys the template to moto (as `make dev` does), then checks what exists there with the
/// AWS SDK, and cold-starts each function from the environment the template gives it.
#[tokio::test]
async fn deploying_the_template_to_moto_gives_the_data_plane_every_function_starts_from() {
    let aws = Aws::connect().await;
    let stack = unique("tmpl");
    let out = deploy_stack(&stack).await;
    let env = &out["env"];
    let s = |k: &str| {
        env[k]
            .as_str()
            .unwrap_or_else(|| panic!("{k} missing from {env}"))
            .to_string()
    };

    // Tables with the contract's keys.
    let ddb = aws.ddb();
    for (table, keys) in [
        (
            s("OBJECTS_TABLE"),
            vec![("grant_id", KeyType::Hash), ("sk", KeyType::Range)],
        ),
        (s("GRANTS_TABLE"), vec![("grant_id", KeyType::Hash)]),
    ] {
        let t = ddb
            .describe_table()
            .table_name(&table)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{table}: {e:?}"))
            .table
            .unwrap();
        let got: Vec<_> = t
            .key_schema()
            .iter()
            .map(|k| (k.attribute_name().to_string(), k.key_type().clone()))
            .collect();
        let want: Vec<_> = keys
            .iter()
            .map(|(n, k)| (n.to_string(), k.clone()))
            .collect();
        assert_eq!(got, want, "{table}");
        for a in t.attribute_definitions() {
            // Keys are strings; the objects table's date index sorts by a number.
            let want = if a.attribute_name() == nylas_sync::store::DATE_ATTRIBUTE {
                ScalarAttributeType::N
            } else {
                ScalarAttributeType::S
            };
            assert_eq!(a.attribute_type(), &want, "{table}");
        }
    }

    // Queues redriving to their DLQs, with the template's visibility.
    for (queue, dlq, visibility, max_receive) in [
        ("NOTIFICATIONS_QUEUE_URL", "NOTIFICATIONS_DLQ_URL", "360", 5),
        ("RECONCILE_QUEUE_URL", "RECONCILE_DLQ_URL", "1800", 3),
    ] {
        let attrs = |url: String| {
            let sqs = aws.sqs.clone();
            async move {
                sqs.get_queue_attributes()
                    .queue_url(&url)
                    .attribute_names(QueueAttributeName::All)
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("{url}: {e:?}"))
                    .attributes
                    .unwrap_or_default()
            }
        };
        let q = attrs(s(queue)).await;
        let d = attrs(s(dlq)).await;
        let redrive: Value =
            serde_json::from_str(&q[&QueueAttributeName::RedrivePolicy]).expect("redrive JSON");
        assert_eq!(
            redrive["deadLetterTargetArn"],
            d[&QueueAttributeName::QueueArn].as_str(),
            "{queue}"
        );
        assert_eq!(
            redrive["maxReceiveCount"].to_string().trim_matches('"'),
            max_receive.to_string()
        );
        assert_eq!(q[&QueueAttributeName::VisibilityTimeout], visibility);
    }

    // The bucket, and the secret the template declares (created through the API).
    aws.s3
        .head_bucket()
        .bucket(s("PAYLOAD_BUCKET"))
        .send()
        .await
        .expect("payload bucket exists");
    let secret = aws
        .secrets
        .get_secret_value()
        .secret_id(s("SECRETS_ARN"))
        .send()
        .await
        .expect("secret exists");
    let doc: Value = serde_json::from_str(secret.secret_string().unwrap()).unwrap();
    assert_eq!(doc["webhook_secrets"], serde_json::json!([]));

    // Lambda functions are not deployed to moto: an event source mapping there would make moto
    // consume the queues itself.
    let deployed = out["deployed"].as_object().unwrap();
    assert!(deployed
        .values()
        .all(|t| !t.as_str().unwrap().starts_with("AWS::Lambda")));
    assert_eq!(
        out["functions"]["scheduler"]["schedule"],
        "rate(30 minutes)"
    );
    assert_eq!(
        out["functions"]["scheduler"]["watch_schedule"],
        "rate(5 minutes)"
    );
    assert_eq!(out["functions"]["consumer"]["sqs"]["batch_size"], 10);
    assert_eq!(
        out["functions"]["reconciler"]["sqs"]["maximum_concurrency"],
        5
    );

    // First-deploy step: put the API key and a webhook secret in the secret. Then every function
    // cold-starts from exactly the environment the template gives it.
    aws.secrets
        .put_secret_value()
        .secret_id(s("SECRETS_ARN"))
        .secret_string(r#"{"nylas_api_key":"test-key","webhook_secrets":["whsec-1"]}"#)
        .send()
        .await
        .unwrap();
    let envs: BTreeMap<String, HashMap<String, String>> = BINARIES
        .iter()
        .map(|b| {
            let vars = out["functions"][b]["environment"]
                .as_object()
                .unwrap_or_else(|| panic!("{b}'s environment"))
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                .collect();
            (b.to_string(), vars)
        })
        .collect();
    let as_env = |b: &str| -> HashMap<&str, &str> {
        envs[b]
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    };
    nylas_sync::consumer::Consumer::from_env(&as_env("consumer"))
        .await
        .expect("the consumer starts from the template's environment");
    nylas_sync::reconcile::Reconciler::from_env(&as_env("reconciler"))
        .await
        .expect("the reconciler starts from the template's environment");
    let scheduler = nylas_sync::scheduler::Scheduler::from_env(&as_env("scheduler"))
        .await
        .expect("the scheduler starts from the template's environment");
    let fan = scheduler
        .fan_out()
        .await
        .expect("scan of the template's grants table");
    assert_eq!(fan.grants, 0);
    let ingest = nylas_sync::ingest::Ingest::from_env(&as_env("ingest"))
        .await
        .expect("the ingest starts from the template's environment");
    let body = message_created("n-tmpl", "g-tmpl", "m-tmpl", 10);
    let (status, _) = status_and_body(&ingest.handle(signed_post(&body, "whsec-1")).await);
    assert_eq!(status, 200);
    let queued = aws.drain(&s("NOTIFICATIONS_QUEUE_URL")).await;
    assert_eq!(
        queued.len(),
        1,
        "the notification is on the template's queue"
    );
    assert_eq!(queued[0].body(), Some(body.as_str()));

    // Deploying again to the same moto changes nothing and prints the same names.
    let again = deploy_stack(&stack).await;
    assert_eq!(again["env"], out["env"]);
}
