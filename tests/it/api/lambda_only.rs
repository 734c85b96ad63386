//! What only the Lambda functions do: each serves its own operation.

use mediastreams_functions::{Api, ApiConfig, Operation};
use mediastreams_storage::StreamRepo;

#[tokio::test]
async fn a_function_serves_only_its_operation() {
    let dir = mediastreams_tests::scratch();
    let api = Api::new(
        StreamRepo::new(mediastreams_tests::embedded_table(&dir)),
        mediastreams_tests::local_store(&dir),
        ApiConfig {
            media_base_url: "https://media.example.com".into(),
            ingest_base_url: "https://ingest.example.com".into(),
            api_key: None,
        },
    );
    let event = |method: &str, path: &str| {
        serde_json::json!({
            "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": "",
            "headers": {},
            "requestContext": {"accountId": "1", "apiId": "a", "domainName": "d", "domainPrefix": "d",
                "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "192.0.2.1", "userAgent": "t"},
                "requestId": "r", "routeKey": "$default", "stage": "$default", "time": "t", "timeEpoch": 0},
            "isBase64Encoded": false
        })
        .to_string()
    };
    let req = lambda_http::request::from_str(&event("PUT", "/streams/x")).unwrap();
    let res = mediastreams_functions::lambda::handle(&api, Some(Operation::GetStream), req).await;
    assert_eq!(res.status(), 404, "get-stream refuses a create");
    let req = lambda_http::request::from_str(&event("PUT", "/streams/x")).unwrap();
    let res = mediastreams_functions::lambda::handle(&api, Some(Operation::CreateStream), req).await;
    assert_eq!(res.status(), 201);
    let req = lambda_http::request::from_str(&event("GET", "/streams/x")).unwrap();
    let res = mediastreams_functions::lambda::handle(&api, Some(Operation::GetStream), req).await;
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = serde_json::from_slice(res.body().as_ref()).unwrap();
    assert!(body["outputs"][0]["url"].as_str().unwrap().starts_with("https://media.example.com/"));
}
