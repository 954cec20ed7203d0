//! The SAM template against the code: every function's environment is exactly the configuration
//! contract it reads (`nylas_sync::contract`), the tables have the contract's keys, and every
//! SQS event source reports batch item failures.

use std::collections::BTreeSet;

use serde_yaml::Value;

fn template() -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../infra/template.yaml");
    serde_yaml::from_str(&std::fs::read_to_string(path).expect("template")).expect("YAML")
}

fn resources(t: &Value) -> Vec<(String, Value)> {
    t["Resources"]
        .as_mapping()
        .expect("Resources")
        .iter()
        .map(|(k, v)| (k.as_str().unwrap_or_default().to_string(), v.clone()))
        .collect()
}

#[test]
fn each_function_gets_exactly_the_environment_its_code_reads() {
    let t = template();
    let global: BTreeSet<String> = t["Globals"]["Function"]["Environment"]["Variables"]
        .as_mapping()
        .map(|m| {
            m.keys()
                .filter_map(|k| k.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let mut seen = BTreeSet::new();
    for (name, r) in resources(&t) {
        if r["Type"] != "AWS::Serverless::Function" {
            continue;
        }
        let binary = r["Metadata"]["BuildProperties"]["Binary"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: no Binary"));
        assert_eq!(r["Metadata"]["BuildMethod"], "rust-cargolambda", "{name}");
        let contract = nylas_sync::contract::for_function(binary)
            .unwrap_or_else(|| panic!("{binary}: not a function"));
        let mut vars = global.clone();
        if let Some(m) = r["Properties"]["Environment"]["Variables"].as_mapping() {
            vars.extend(m.keys().filter_map(|k| k.as_str().map(str::to_string)));
        }
        let known: BTreeSet<String> = contract
            .iter()
            .chain(nylas_sync::contract::COMMON)
            .map(|v| v.name.to_string())
            .collect();
        let unknown: Vec<&String> = vars.difference(&known).collect();
        assert!(
            unknown.is_empty(),
            "{binary}: the template sets variables the code does not read: {unknown:?}"
        );
        for v in contract.iter().filter(|v| v.required) {
            assert!(
                vars.contains(v.name),
                "{binary}: required {} not set",
                v.name
            );
        }
        assert!(
            vars.contains("SECRETS_ARN"),
            "{binary}: secrets come from Secrets Manager in AWS"
        );
        for local_only in ["NYLAS_API_KEY", "NYLAS_WEBHOOK_SECRETS", "AWS_ENDPOINT_URL"] {
            assert!(
                !vars.contains(local_only),
                "{binary}: {local_only} is for local runs only"
            );
        }
        seen.insert(binary.to_string());
    }
    let all: BTreeSet<String> = ["ingest", "consumer", "scheduler", "reconciler"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(seen, all, "the four functions");
}

#[test]
fn tables_have_the_contract_keys_and_queues_have_dead_letter_queues() {
    let t = template();
    let mut tables = Vec::new();
    for (name, r) in resources(&t) {
        let p = &r["Properties"];
        match r["Type"].as_str() {
            Some("AWS::DynamoDB::Table") => {
                let keys: Vec<(String, String)> = p["KeySchema"]
                    .as_sequence()
                    .unwrap()
                    .iter()
                    .map(|k| {
                        (
                            k["AttributeName"].as_str().unwrap().to_string(),
                            k["KeyType"].as_str().unwrap().to_string(),
                        )
                    })
                    .collect();
                assert_eq!(p["BillingMode"], "PAY_PER_REQUEST", "{name}");
                assert_eq!(
                    p["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"], true,
                    "{name}"
                );
                assert!(
                    p["TimeToLiveSpecification"]["AttributeName"].is_string(),
                    "{name}"
                );
                tables.push(keys);
            }
            Some("AWS::SQS::Queue") if !name.contains("DeadLetter") => {
                assert!(
                    p["RedrivePolicy"]["maxReceiveCount"].as_u64().is_some(),
                    "{name} has no DLQ"
                );
            }
            Some("AWS::Serverless::Function") => {
                for (_, e) in p["Events"].as_mapping().into_iter().flatten() {
                    if e["Type"] == "SQS" {
                        let types = e["Properties"]["FunctionResponseTypes"]
                            .as_sequence()
                            .expect("FunctionResponseTypes");
                        assert!(
                            types.iter().any(|t| t == "ReportBatchItemFailures"),
                            "{name}"
                        );
                    }
                }
            }
            _ => {}
        }
    }
    tables.sort();
    assert_eq!(
        tables,
        vec![
            vec![("grant_id".to_string(), "HASH".to_string())],
            vec![
                ("grant_id".to_string(), "HASH".to_string()),
                ("sk".to_string(), "RANGE".to_string())
            ],
        ]
    );
}
