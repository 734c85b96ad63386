//! The function binaries run as Lambda runs them: each `functions/src/bin`
//! binary is started with the environment the SAM template gives it and
//! talks to the Lambda Runtime API of `cargo lambda watch`
//! (`--only-lambda-apis`: the emulator, offline), and `cargo lambda invoke`
//! sends it the sample events kept in `functions/events/`; each answer is
//! compared with the `.expected.json` beside the event. So the `lambda_http`
//! wiring, the environment variables and the logging setup are what is
//! tested, against the DynamoDB/S3-compatible test server.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn cargo_lambda() -> PathBuf {
    let path = mediastreams_tests::workspace_root().join(".tools/infra-venv/bin/cargo-lambda");
    assert!(path.exists(), "{} is missing: scripts/install-test-deps installs it", path.display());
    path
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0)
}

/// The environment variables the template gives every function
/// (`Globals.Function.Environment.Variables`).
fn template_environment() -> Vec<String> {
    let text = std::fs::read_to_string(mediastreams_tests::workspace_root().join("infra/template.yaml")).unwrap();
    // CloudFormation's short-form tags (!Ref, !Sub, !If) are not YAML the
    // parser knows: drop them, keep the structure.
    let plain: String = text.lines().map(|l| l.replace("!Ref ", "").replace("!Sub ", "").replace("!If", "")).collect::<Vec<_>>().join("\n");
    let t: serde_yaml::Value = serde_yaml::from_str(&plain).unwrap();
    t["Globals"]["Function"]["Environment"]["Variables"]
        .as_mapping()
        .map(|m| m.keys().filter_map(|k| k.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// `expected` holds in `actual`: equal scalars, objects' listed keys.
fn subset(expected: &Value, actual: &Value) -> bool {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => e.iter().all(|(k, v)| a.get(k).is_some_and(|x| subset(v, x))),
        _ => expected == actual,
    }
}

fn invoke(port: u16, function: &str, event: &Path) -> Value {
    let out = Command::new(cargo_lambda())
        .args([
            "lambda",
            "invoke",
            function,
            "--invoke-address",
            "127.0.0.1",
            "--invoke-port",
            &port.to_string(),
            "--output-format",
            "json",
        ])
        .arg("--data-file")
        .arg(event)
        .output()
        .expect("run cargo lambda invoke");
    assert!(out.status.success(), "cargo lambda invoke {function}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{function} answered ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

#[tokio::test(flavor = "multi_thread")]
async fn every_function_answers_its_sample_events_through_the_lambda_runtime_api() {
    let endpoint = mediastreams_tests::aws_endpoint();
    let table = mediastreams_tests::dynamo_table().await;
    let store = mediastreams_tests::s3_store().await;
    let root = mediastreams_tests::workspace_root();
    let events = root.join("functions/events");
    let port = free_port();
    let _emulator = Killed(
        Command::new(cargo_lambda())
            .current_dir(root.join("functions"))
            .args(["lambda", "watch", "--only-lambda-apis", "--invoke-address", "127.0.0.1", "--invoke-port", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start cargo lambda watch"),
    );
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed() < Duration::from_secs(30), "the Runtime API emulator never listened on {port}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Every variable the template sets, with this test's values (those the
    // template computes from its resources and parameters).
    let values: BTreeMap<&str, String> = BTreeMap::from([
        ("TABLE_NAME", table.table_name().to_owned()),
        ("MEDIA_BUCKET", store.bucket().to_owned()),
        ("MEDIA_BASE_URL", "https://media.example.com".to_owned()),
        ("INGEST_BASE_URL", "https://ingest.example.com".to_owned()),
        ("RUST_LOG", "info".to_owned()),
    ]);
    let template = template_environment();
    assert!(!template.is_empty(), "the template gives the functions an environment");
    for name in &template {
        assert!(values.contains_key(name.as_str()), "the template sets {name}, which this test does not provide");
    }
    let logs = mediastreams_tests::scratch();
    let mut functions = Vec::new();
    for function in ["create-stream", "get-stream", "list-streams", "start-ingest", "stop-ingest", "reap-streams", "delete-stream"] {
        let log = std::fs::File::create(logs.path().join(format!("{function}.log"))).unwrap();
        let mut cmd = Command::new(mediastreams_tests::workspace_binary(function));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            // What Lambda sets (the emulator routes by the runtime path).
            .env("AWS_LAMBDA_RUNTIME_API", format!("http://127.0.0.1:{port}/.rt/{function}"))
            .env("AWS_LAMBDA_FUNCTION_NAME", function)
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "local")
            .env("AWS_SECRET_ACCESS_KEY", "local")
            // The compatible server instead of AWS.
            .env("AWS_ENDPOINT_URL", &endpoint)
            .env("S3_FORCE_PATH_STYLE", "true")
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        for name in &template {
            cmd.env(name, &values[name.as_str()]);
        }
        functions.push((function, Killed(cmd.spawn().expect("start a function binary"))));
    }
    for (function, _) in &functions {
        let event = events.join(format!("{function}.json"));
        let answer = invoke(port, function, &event);
        let expected: Value =
            serde_json::from_str(&std::fs::read_to_string(events.join(format!("{function}.expected.json"))).unwrap()).unwrap();
        let log = std::fs::read_to_string(logs.path().join(format!("{function}.log"))).unwrap_or_default();
        if *function == "reap-streams" {
            assert!(subset(&expected, &answer), "{function}: {answer} (expected {expected}); log: {log}");
            continue;
        }
        // API Gateway's response: the status, and the JSON body it carries.
        assert_eq!(answer["statusCode"], expected["statusCode"], "{function}: {answer}; log: {log}");
        if let Some(body) = expected.get("body") {
            let actual: Value = serde_json::from_str(answer["body"].as_str().unwrap_or("null")).unwrap_or(Value::Null);
            assert!(subset(body, &actual), "{function}: body {actual} (expected {body}); log: {log}");
        }
        // JSON logs, one object a line, as CloudWatch gets them.
        assert!(
            log.lines().filter(|l| !l.trim().is_empty()).all(|l| serde_json::from_str::<Value>(l).is_ok()),
            "{function}: logs are JSON lines: {log}"
        );
        assert!(log.contains("\"function starting\""), "{function}: {log}");
    }
}
