//! The SAM template and the workspace agree: one function per operation,
//! each built from the binary of that operation and routed like it, plus
//! the scheduled functions, each built from its binary.

use std::collections::BTreeSet;

use mediastreams_functions::{Operation, route};
use serde_yaml::Value;

fn template() -> Value {
    let path = mediastreams_tests::workspace_root().join("infra/template.yaml");
    serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn binaries_in_cargo_toml() -> BTreeSet<String> {
    let path = mediastreams_tests::workspace_root().join("functions/Cargo.toml");
    let text = std::fs::read_to_string(path).unwrap();
    text.split("[[bin]]")
        .skip(1)
        .filter_map(|b| b.lines().find_map(|l| l.strip_prefix("name = ")).map(|n| n.trim_matches('"').to_owned()))
        .collect()
}

#[test]
fn every_operation_is_one_function_built_from_its_binary() {
    let t = template();
    let resources = t["Resources"].as_mapping().unwrap();
    let mut seen = BTreeSet::new();
    let mut scheduled = BTreeSet::new();
    for (name, r) in resources {
        if r["Type"].as_str() != Some("AWS::Serverless::Function") {
            continue;
        }
        let name = name.as_str().unwrap();
        assert_eq!(r["Metadata"]["BuildMethod"].as_str(), Some("rust-cargolambda"), "{name}");
        let binary = r["Metadata"]["BuildProperties"]["Binary"].as_str().unwrap();
        assert_eq!(r["Properties"]["CodeUri"].as_str(), Some("../functions"), "{name}");
        if let Some(schedule) = r["Properties"]["Events"]["EveryMinute"]["Properties"]["Schedule"].as_str() {
            assert_eq!((binary, schedule), (SCHEDULED, "rate(1 minute)"), "{name}");
            scheduled.insert(binary.to_owned());
            continue;
        }
        let event = &r["Properties"]["Events"]["Http"]["Properties"];
        let method = event["Method"].as_str().unwrap();
        let path = event["Path"].as_str().unwrap().replace("{name}", "example");
        let routed = route(&http::Method::from_bytes(method.as_bytes()).unwrap(), &path)
            .unwrap_or_else(|e| panic!("{name}: {method} {path} does not route: {e:?}"));
        assert_eq!(routed.operation.binary(), binary, "{name} routes to another operation");
        seen.insert(binary.to_owned());
    }
    let operations: BTreeSet<String> = Operation::ALL.iter().map(|o| o.binary().to_owned()).collect();
    assert_eq!(seen, operations, "one function per operation");
    assert_eq!(scheduled, BTreeSet::from([SCHEDULED.to_owned()]), "the reaper is deployed");
    let mut binaries = operations;
    binaries.insert(SCHEDULED.to_owned());
    assert_eq!(binaries_in_cargo_toml(), binaries, "one binary per function");
}

/// The scheduled function that finalizes dead nodes' streams.
const SCHEDULED: &str = "reap-streams";

#[test]
fn the_table_matches_what_the_code_expects() {
    let t = template();
    use mediastreams_storage::table::{COLL, INDEX_BY_COLLECTION, PK};
    let table = &t["Resources"]["StreamTable"]["Properties"];
    // The names DynamoTable reads and writes (and gives the table it
    // creates itself, locally), not literals.
    let key = |k: &serde_yaml::Value| (k["AttributeName"].as_str().map(str::to_owned), k["KeyType"].as_str().map(str::to_owned));
    let keys = |v: &serde_yaml::Value| v.as_sequence().map(|s| s.iter().map(key).collect::<Vec<_>>()).unwrap_or_default();
    let owned = |a: &str, t: &str| (Some(a.to_owned()), Some(t.to_owned()));
    assert_eq!(keys(&table["KeySchema"]), vec![owned(PK, "HASH")]);
    let gsis = table["GlobalSecondaryIndexes"].as_sequence().map(Vec::as_slice).unwrap_or_default();
    assert_eq!(gsis.len(), 1, "one index");
    assert_eq!(gsis[0]["IndexName"].as_str(), Some(INDEX_BY_COLLECTION));
    assert_eq!(keys(&gsis[0]["KeySchema"]), vec![owned(COLL, "HASH"), owned(PK, "RANGE")]);
    assert_eq!(gsis[0]["Projection"]["ProjectionType"].as_str(), Some("ALL"), "the reaper reads whole records from the index");
    let mut defined: Vec<(String, String)> = table["AttributeDefinitions"]
        .as_sequence()
        .map(|s| {
            s.iter().filter_map(|d| Some((d["AttributeName"].as_str()?.to_owned(), d["AttributeType"].as_str()?.to_owned()))).collect()
        })
        .unwrap_or_default();
    defined.sort();
    assert_eq!(defined, vec![(COLL.to_owned(), "S".to_owned()), (PK.to_owned(), "S".to_owned())]);
    assert_eq!(table["BillingMode"].as_str(), Some("PAY_PER_REQUEST"));
    assert_eq!(table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"].as_bool(), Some(true));
}
