//! Validates real responses against the OpenAPI description.

use std::sync::OnceLock;

use serde_json::Value;

fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| {
        let path = mediastreams_tests::workspace_root().join("docs/openapi.yaml");
        let text = std::fs::read_to_string(&path).expect("read docs/openapi.yaml");
        let yaml: serde_yaml::Value = serde_yaml::from_str(&text).expect("parse openapi.yaml");
        serde_json::to_value(yaml).expect("openapi.yaml as JSON")
    })
}

fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// Follows `$ref`s in the document (for response objects).
fn resolve(v: &Value) -> &Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let pointer = r.strip_prefix('#').expect("local ref");
            resolve(document().pointer(pointer).expect("ref target exists"))
        }
        None => v,
    }
}

/// Checks one response: the status must be documented for the operation,
/// the content type must be the documented one, and the body must match
/// its schema. `template` is the path template (`/streams/{name}`), or
/// `None` for requests that match no operation (answered with a problem).
pub fn check(method: &str, template: Option<&str>, status: u16, content_type: Option<&str>, body: &[u8]) {
    let (pointer, documented) = match template {
        Some(t) => {
            let op = format!("/paths/{}/{}", escape(t), method.to_ascii_lowercase());
            let responses = document().pointer(&format!("{op}/responses")).unwrap_or_else(|| panic!("{method} {t} is not in openapi.yaml"));
            let response = responses
                .get(status.to_string())
                .unwrap_or_else(|| panic!("{method} {t} answered {status}, which openapi.yaml does not document"));
            (format!("{op}/responses/{status}"), resolve(response).clone())
        }
        None => {
            ("/components/responses/NotFound".to_owned(), resolve(&serde_json::json!({"$ref": "#/components/responses/NotFound"})).clone())
        }
    };
    let Some(content) = documented.get("content").and_then(Value::as_object) else {
        assert!(body.is_empty(), "{pointer}: documented without a body, got {:?}", String::from_utf8_lossy(body));
        return;
    };
    let ct = content_type.unwrap_or_else(|| panic!("{pointer}: response has no content type"));
    let mime = ct.split(';').next().unwrap_or("").trim();
    let media = content.get(mime).unwrap_or_else(|| panic!("{pointer}: content type {mime} is not documented"));
    let schema = if template.is_some() {
        media.get("schema").cloned().unwrap_or_else(|| panic!("{pointer}: no schema"))
    } else {
        serde_json::json!({"$ref": "#/components/schemas/Problem"})
    };
    // Validate against the whole document so internal $refs resolve.
    let mut root = document().clone();
    let obj = root.as_object_mut().expect("object");
    obj.insert("$defs".into(), serde_json::json!({ "target": schema }));
    obj.insert("$ref".into(), Value::String("#/$defs/target".into()));
    obj.insert("$schema".into(), Value::String("https://json-schema.org/draft/2020-12/schema".into()));
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .build(&root)
        .expect("openapi schema compiles");
    let instance: Value =
        serde_json::from_slice(body).unwrap_or_else(|e| panic!("{pointer}: body is not JSON ({e}): {:?}", String::from_utf8_lossy(body)));
    let errors: Vec<String> = validator.iter_errors(&instance).map(|e| format!("{} at {}", e, e.instance_path())).collect();
    assert!(errors.is_empty(), "{pointer}: response does not match openapi.yaml: {errors:#?}\nbody: {instance:#}");
}

#[test]
fn the_document_is_a_valid_openapi_3_1_shape() {
    let doc = document();
    assert_eq!(doc["openapi"], "3.1.0");
    // Every operation the API routes is described, under its operation id.
    for op in mediastreams_functions::Operation::ALL {
        let found = doc["paths"]
            .as_object()
            .unwrap()
            .values()
            .flat_map(|p| p.as_object().unwrap().values())
            .any(|o| o.get("operationId").and_then(Value::as_str) == Some(op.id()));
        assert!(found, "{} is missing from openapi.yaml", op.id());
    }
}

#[test]
fn the_validator_rejects_what_the_document_forbids() {
    // A check that could never fail would prove nothing: feed it bad bodies.
    let bad_stream = br#"{"name":"a","playbackId":"x","state":"Weird","outputs":[],"fragmentDurationMs":1,"dvrWindowSeconds":1,"createdAt":"now","updatedAt":"now"}"#;
    let r = std::panic::catch_unwind(|| check("GET", Some("/streams/{name}"), 200, Some("application/json"), bad_stream));
    assert!(r.is_err(), "an invalid stream body must not validate");
    let r = std::panic::catch_unwind(|| check("GET", Some("/streams/{name}"), 418, Some("application/json"), b"{}"));
    assert!(r.is_err(), "an undocumented status must not validate");
    let r = std::panic::catch_unwind(|| {
        check(
            "GET",
            Some("/streams/{name}"),
            404,
            Some("application/json"),
            br#"{"type":"t","title":"t","status":404,"code":"not-found","detail":"d"}"#,
        )
    });
    assert!(r.is_err(), "problems must be application/problem+json");
}
