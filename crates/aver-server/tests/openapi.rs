//! The generated OpenAPI document against three references: Azure
//! Attestation's REST specification (the names in
//! `tests/data/azure-rest-names.json`, with Aver's deliberate differences
//! listed there), the router (every route documented, every documented
//! operation served, no undocumented method on a documented path), and the
//! live answers of a real server (their members are the schema's).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use common::TestService;

const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];

fn doc() -> Value {
    serde_json::to_value(aver_server::openapi::document()).unwrap()
}

fn fixture() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/azure-rest-names.json"
    );
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Follows `$ref`s to `#/components/schemas/...`; for `oneOf`/`anyOf`
/// (how an optional reference is written), the first non-null variant.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("unexpected $ref {r}"));
        let target = doc["components"]["schemas"]
            .get(name)
            .unwrap_or_else(|| panic!("$ref to a missing schema {name}"));
        return resolve(doc, target);
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(variants) = schema.get(key).and_then(Value::as_array) {
            let first = variants
                .iter()
                .find(|v| v.get("type").and_then(Value::as_str) != Some("null"))
                .unwrap_or_else(|| panic!("{key} with only null: {schema}"));
            return resolve(doc, first);
        }
    }
    schema
}

/// The JSON type a schema describes (`string`, `object`, `array`, ...);
/// `["string", "null"]` is `string`.
fn json_type(doc: &Value, schema: &Value) -> String {
    let schema = resolve(doc, schema);
    match schema.get("type") {
        Some(Value::String(t)) => t.clone(),
        Some(Value::Array(types)) => types
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("null")
            .to_string(),
        _ if schema.get("properties").is_some() => "object".into(),
        _ if schema.get("enum").is_some() => "string".into(),
        _ => panic!("no type in schema {schema}"),
    }
}

/// Whether a schema admits `null` (`["string", "null"]`, or a `oneOf`
/// with a null variant: how utoipa writes `Option`).
fn nullable(schema: &Value) -> bool {
    let null_type = |s: &Value| match s.get("type") {
        Some(Value::String(t)) => t == "null",
        Some(Value::Array(ts)) => ts.iter().any(|t| t == "null"),
        _ => false,
    };
    null_type(schema)
        || ["oneOf", "anyOf"].iter().any(|k| {
            schema
                .get(*k)
                .and_then(Value::as_array)
                .is_some_and(|vs| vs.iter().any(null_type))
        })
}

fn properties<'a>(doc: &'a Value, schema: &'a Value) -> &'a Map<String, Value> {
    resolve(doc, schema)
        .get("properties")
        .and_then(Value::as_object)
        .unwrap_or_else(|| panic!("no properties in {schema}"))
}

fn operation<'a>(doc: &'a Value, path: &str, method: &str) -> Option<&'a Value> {
    doc["paths"].get(path)?.get(method)
}

/// Asserts that Aver's schema has each of Azure's names with a compatible
/// JSON type, except `omitted`; `what` names the place for messages.
fn assert_names(
    doc: &Value,
    aver: &Value,
    azure: &Map<String, Value>,
    omitted: &BTreeSet<String>,
    what: &str,
) {
    let props = properties(doc, aver);
    for (name, azure_type) in azure {
        if omitted.contains(name) {
            assert!(
                !props.contains_key(name),
                "{what}: {name} is listed as omitted but Aver's schema has it; update the fixture"
            );
            continue;
        }
        let schema = props.get(name).unwrap_or_else(|| {
            panic!(
                "{what}: Azure's property {name:?} is missing from Aver's schema (has {:?})",
                props.keys().collect::<Vec<_>>()
            )
        });
        assert_eq!(
            json_type(doc, schema),
            azure_type.as_str().unwrap(),
            "{what}.{name}: Aver's JSON type differs from Azure's"
        );
    }
}

#[test]
fn shared_paths_carry_azures_request_and_response_names() {
    let doc = doc();
    let fx = fixture();
    let added: BTreeMap<String, BTreeSet<String>> = fx["aver"]["added_request_properties"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            let names = v["names"].as_array().unwrap();
            (
                k.clone(),
                names
                    .iter()
                    .map(|n| n.as_str().unwrap().to_string())
                    .collect(),
            )
        })
        .collect();
    let mut checked = 0;
    for op in fx["azure"]["operations"].as_array().unwrap() {
        let (path, method) = (op["path"].as_str().unwrap(), op["method"].as_str().unwrap());
        let what = format!("{method} {path}");
        let aver = operation(&doc, path, method).unwrap_or_else(|| {
            panic!("{what} is in Azure's specification but not in Aver's document")
        });

        // api-version: required where Azure requires it, absent where not.
        let takes_version = aver
            .get("parameters")
            .and_then(Value::as_array)
            .is_some_and(|ps| {
                ps.iter().any(|p| {
                    p["name"] == "api-version" && p["in"] == "query" && p["required"] == true
                })
            });
        assert_eq!(
            takes_version,
            op["api_version"].as_bool().unwrap(),
            "{what}: api-version parameter"
        );

        if let Some(request) = op.get("request") {
            let content_type = op["content_type"].as_str().unwrap();
            let schema = aver["requestBody"]["content"]
                .get(content_type)
                .unwrap_or_else(|| panic!("{what}: no {content_type} request body"))
                .get("schema")
                .unwrap();
            match request.get("properties") {
                Some(Value::Object(names)) => {
                    assert_names(&doc, schema, names, &BTreeSet::new(), &what);
                    // Properties Aver adds beyond Azure's must be listed.
                    let extra: BTreeSet<String> = properties(&doc, schema)
                        .keys()
                        .filter(|k| !names.contains_key(*k))
                        .cloned()
                        .collect();
                    assert_eq!(
                        extra,
                        added.get(&what).cloned().unwrap_or_default(),
                        "{what}: request properties beyond Azure's must be listed in aver.added_request_properties"
                    );
                }
                _ => assert_eq!(
                    json_type(&doc, schema),
                    request["type"].as_str().unwrap(),
                    "{what}: request body type"
                ),
            }
        }

        let response = &op["response"];
        let ok = &aver["responses"]["200"]["content"]["application/json"]["schema"];
        assert!(!ok.is_null(), "{what}: no 200 application/json response");
        assert_names(
            &doc,
            ok,
            response["properties"].as_object().unwrap(),
            &BTreeSet::new(),
            &what,
        );
        if let Some(body) = response.get("jwt_body").and_then(Value::as_str) {
            // The JWT body schema is named in the response schema's
            // description and present under Azure's name.
            let description = resolve(&doc, ok)["description"]
                .as_str()
                .unwrap_or_default();
            assert!(
                description.contains(body),
                "{what}: the response does not say its JWT body is a {body}"
            );
            assert!(
                doc["components"]["schemas"].get(body).is_some(),
                "{what}: no {body} schema"
            );
        }
        // Errors: Azure's `default` is a CloudError; so is Aver's.
        let default = &aver["responses"]["default"]["content"]["application/json"]["schema"];
        assert_eq!(
            default["$ref"], "#/components/schemas/CloudError",
            "{what}: error answers"
        );
        checked += 1;
    }
    assert!(checked >= 13, "only {checked} operations checked");

    // Azure's definitions, by Aver's name for them.
    let names = fx["aver"]["schema_names"].as_object().unwrap();
    let omitted = fx["aver"]["omitted_properties"].as_object().unwrap();
    for (azure_name, props) in fx["azure"]["definitions"].as_object().unwrap() {
        let aver_name = names
            .get(azure_name)
            .and_then(Value::as_str)
            .unwrap_or(azure_name);
        let schema = json!({ "$ref": format!("#/components/schemas/{aver_name}") });
        let skip: BTreeSet<String> = omitted
            .get(azure_name)
            .map(|o| {
                o["names"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|n| n.as_str().unwrap().to_string())
                    .collect()
            })
            .unwrap_or_default();
        assert_names(&doc, &schema, props.as_object().unwrap(), &skip, azure_name);
    }

    // DataType's values are Azure's.
    let runtime_data = json!({"$ref": "#/components/schemas/RuntimeData"});
    let data_type = resolve(&doc, &properties(&doc, &runtime_data)["dataType"]);
    assert_eq!(data_type["enum"], json!(["Binary", "JSON"]));

    // Bounds come from the handlers' constants.
    let rotate = json!({"$ref": "#/components/schemas/RotateKeyRequest"});
    let delay = resolve(&doc, &properties(&doc, &rotate)["publish_delay_secs"]);
    assert_eq!(
        delay["maximum"],
        json!(aver_server::keys::MAX_PUBLISH_DELAY_SECS)
    );
    assert_eq!(
        delay["default"],
        json!(aver_server::keys::DEFAULT_PUBLISH_DELAY_SECS)
    );
}

#[test]
fn every_operation_is_azures_or_a_listed_extension_and_nothing_azure_lacks_is_hidden() {
    let doc = doc();
    let fx = fixture();
    let key = |v: &Value| {
        format!(
            "{} {}",
            v["method"].as_str().unwrap(),
            v["path"].as_str().unwrap()
        )
    };
    let azure: BTreeSet<String> = fx["azure"]["operations"]
        .as_array()
        .unwrap()
        .iter()
        .map(key)
        .collect();
    let extensions: BTreeSet<String> = fx["aver"]["extensions"]
        .as_array()
        .unwrap()
        .iter()
        .map(key)
        .collect();
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in METHODS {
            if item.get(method).is_some() {
                documented.insert(format!("{method} {path}"));
            }
        }
    }
    let unexplained: Vec<_> = documented
        .iter()
        .filter(|op| !azure.contains(*op) && !extensions.contains(*op))
        .collect();
    assert!(
        unexplained.is_empty(),
        "operations neither in Azure's specification nor listed as Aver extensions: {unexplained:?}"
    );
    let stale: Vec<_> = extensions.difference(&documented).collect();
    assert!(
        stale.is_empty(),
        "listed extensions not in the document: {stale:?}"
    );
    for op in fx["azure"]["not_served_by_aver"].as_array().unwrap() {
        assert!(
            !documented.contains(&key(op)),
            "{} is now documented: move it from not_served_by_aver to the shared operations",
            key(op)
        );
    }
    // The attestation types: Azure's, less the listed ones, are all served;
    // every served type has its path.
    let served: BTreeSet<&str> = aver_attestation::registry::TYPES
        .iter()
        .map(|t| t.name)
        .collect();
    let not_served = fx["aver"]["not_served_attestation_types"]
        .as_object()
        .unwrap();
    for t in fx["azure"]["attestation_types"].as_array().unwrap() {
        let t = t.as_str().unwrap();
        assert_eq!(
            served.contains(t),
            !not_served.contains_key(t),
            "attestation type {t}"
        );
    }
    for t in &served {
        assert!(
            documented.contains(&format!("post /attest/{t}")),
            "type {t} has no documented path"
        );
    }
}

/// Whether a router path template (`/attest/{kind}`) matches a documented
/// path (`/attest/SgxEnclave`, `/policies/{attestationType}:reset`).
fn route_matches(route: &str, documented: &str) -> bool {
    let r: Vec<&str> = route.split('/').collect();
    let d: Vec<&str> = documented.split('/').collect();
    r.len() == d.len()
        && r.iter()
            .zip(&d)
            .all(|(r, d)| (r.starts_with('{') && r.ends_with('}')) || r == d)
}

#[test]
fn every_route_the_router_serves_is_documented() {
    let doc = doc();
    let documented: Vec<&String> = doc["paths"].as_object().unwrap().keys().collect();
    let routes = aver_server::routes_table();
    assert!(routes.len() >= 15);
    for (route, _) in routes {
        assert!(
            documented.iter().any(|d| route_matches(route, d)),
            "the router serves {route} but the OpenAPI document has no path for it"
        );
    }
    assert!(route_matches("/attest/{kind}", "/attest/SgxEnclave"));
    assert!(route_matches(
        "/policies/{spec}",
        "/policies/{attestationType}:reset"
    ));
    assert!(!route_matches("/keys", "/keys:rotate"));
}

fn https(ca: &[u8]) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca).unwrap())
        .build()
        .unwrap()
}

/// A documented path with its parameters filled in.
fn concrete(path: &str) -> String {
    path.replace("{attestationType}", "SgxEnclave")
}

#[tokio::test]
async fn the_served_document_is_the_generated_one_and_every_operation_is_served() {
    let svc = TestService::start(false).await;
    let http = https(&svc.ca);
    let base = svc.issuer().to_string();

    // Served at a stable path, unauthenticated, also under a provider.
    for prefix in ["", "/providers/default"] {
        let r = http
            .get(format!("{base}{prefix}/openapi.json"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{prefix}/openapi.json");
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/json")
        );
        let served: Value = r.json().await.unwrap();
        assert_eq!(
            served,
            doc(),
            "{prefix}/openapi.json is the generated document"
        );
        assert_eq!(served["openapi"], "3.1.0");
    }

    // Every documented operation reaches a handler (not the 404 fallback,
    // not 405); every other method on a documented path is 405.
    let doc = doc();
    let mut probed = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        let url = format!("{base}{}?api-version=2022-08-01", concrete(path));
        for method in METHODS {
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let r = http.request(m, &url).body("{}").send().await.unwrap();
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            let code = body["error"]["code"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if item.get(method).is_some() {
                assert!(
                    status != 405
                        && !(status == 404 && body["error"]["message"] == "no such endpoint"),
                    "{method} {path} is documented but the server answers {status} {body}"
                );
                assert!(status < 500, "{method} {path}: {status} {body}");
                probed += 1;
            } else {
                assert_eq!(
                    (status, code.as_str()),
                    (405, "MethodNotAllowed"),
                    "{method} {path} is not documented but the server answers {status} {body}"
                );
            }
        }
    }
    assert!(probed >= 20, "only {probed} operations probed");
    svc.service.shutdown().await;
}

/// Asserts that a live JSON answer has only the schema's members and every
/// required one.
fn assert_conforms(doc: &Value, schema_name: &str, value: &Value, what: &str) {
    let reference = json!({ "$ref": format!("#/components/schemas/{schema_name}") });
    let schema = resolve(doc, &reference);
    let props = properties(doc, schema);
    let obj = value
        .as_object()
        .unwrap_or_else(|| panic!("{what}: not an object: {value}"));
    for (name, member) in obj {
        let prop = props.get(name).unwrap_or_else(|| {
            panic!("{what}: member {name:?} is not in the {schema_name} schema")
        });
        if member.is_null() {
            assert!(
                nullable(prop),
                "{what}.{name}: null, but the schema does not admit null"
            );
            continue;
        }
        let expected = json_type(doc, prop);
        let actual = match member {
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
            Value::Bool(_) => "boolean",
            Value::Number(n) if n.is_f64() => "number",
            Value::Number(_) => "integer",
            Value::Null => "null",
        };
        assert!(
            expected == actual || (expected == "number" && actual == "integer"),
            "{what}.{name}: schema says {expected}, the answer has {actual}"
        );
    }
    for required in schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        assert!(
            obj.contains_key(required.as_str().unwrap()),
            "{what}: required member {required} missing"
        );
    }
}

fn jwt_body(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&aver_token::b64::decode_lenient(payload).unwrap()).unwrap()
}

#[tokio::test]
async fn live_answers_have_the_documented_shapes() {
    let svc = TestService::start(false).await;
    let http = https(&svc.ca);
    let base = svc.issuer().to_string();
    let doc = doc();
    let get = |path: &str| {
        let http = http.clone();
        let url = format!("{base}{path}");
        async move {
            let r = http.get(url).send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };

    let (status, certs) = get("/certs").await;
    assert_eq!(status, 200);
    assert_conforms(&doc, "JsonWebKeySet", &certs, "/certs");
    let keys = certs["keys"].as_array().unwrap();
    assert!(!keys.is_empty());
    for key in keys {
        assert_conforms(&doc, "JsonWebKey", key, "/certs key");
    }
    let (_, oidc) = get("/.well-known/openid-configuration").await;
    assert_conforms(&doc, "OpenIdConfiguration", &oidc, "openid-configuration");
    for (path, schema) in [
        ("/health", "HealthResponse"),
        ("/healthz", "HealthResponse"),
        ("/readyz", "ReadinessResponse"),
    ] {
        let (status, body) = get(path).await;
        assert_eq!(status, 200, "{path}");
        assert_conforms(&doc, schema, &body, path);
    }
    let (_, readyz) = get("/readyz").await;
    assert_conforms(&doc, "StoreHealth", &readyz["store"], "/readyz store");
    assert_conforms(&doc, "CpuPoolHealth", &readyz["cpuPool"], "/readyz cpuPool");

    // An error answer.
    let (status, error) = get("/policies/SgxEnclave").await;
    assert_eq!(status, 400, "no api-version");
    assert_conforms(&doc, "CloudError", &error, "error");
    assert_conforms(&doc, "CloudErrorBody", &error["error"], "error body");
    assert_eq!(error["error"]["code"], "MissingApiVersion");

    // Management answers and their JWT bodies, with the admin key.
    let admin = svc.service.new_admin_key.clone().unwrap();
    let mut checked = 0;
    for (path, response, body) in [
        ("/policies/SgxEnclave", "PolicyResponse", "PolicyResult"),
        ("/keys", "KeysResponse", "KeysResult"),
    ] {
        let r = http
            .get(format!("{base}{path}?api-version=2022-08-01"))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let answer: Value = r.json().await.unwrap();
        assert_conforms(&doc, response, &answer, path);
        let claims = jwt_body(answer["token"].as_str().unwrap());
        // The JWT's own claims (iat, exp, ...) aside, the result claims
        // are the documented body's.
        let result: Map<String, Value> = claims
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| k.starts_with("x-"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        assert!(!result.is_empty(), "{path}: no result claims in {claims}");
        assert_conforms(&doc, body, &Value::Object(result), path);
        checked += 1;
    }
    assert_eq!(checked, 2);
    let r = http
        .get(format!("{base}/audit?api-version=2022-08-01"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let audit: Value = r.json().await.unwrap();
    assert_conforms(&doc, "AuditResponse", &audit, "/audit");
    let entries = audit["entries"].as_array().unwrap();
    assert!(!entries.is_empty(), "the first start is audited");
    for e in entries {
        assert_conforms(&doc, "AuditRecord", e, "/audit entry");
    }
    svc.service.shutdown().await;
}

/// Schemathesis, installed by `compat/setup.sh` (or `AVER_SCHEMATHESIS`).
fn schemathesis() -> Result<std::path::PathBuf, String> {
    let st = std::env::var_os("AVER_SCHEMATHESIS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../compat/schemathesis/.venv/bin/st")
        });
    match std::process::Command::new(&st)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .output()
    {
        Ok(o) if o.status.success() => Ok(st),
        Ok(o) => Err(format!(
            "{} --version failed ({}); run `bash compat/setup.sh`",
            st.display(),
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Err(format!(
            "schemathesis not found ({}: {e}); run `bash compat/setup.sh` or set AVER_SCHEMATHESIS",
            st.display()
        )),
    }
}

/// Schemathesis generates requests from the served document — valid ones,
/// and invalid ones (wrong types, missing fields, values outside the
/// schema) — against a real service with the admin key, and checks that
/// none is answered with a 5xx: a client's mistake is a 4xx. Bounded by a
/// fixed number of examples per operation and a fixed seed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error() {
    const TEST: &str = "openapi::schemathesis_finds_no_server_error";
    let st = match schemathesis() {
        Ok(st) => st,
        Err(reason) => {
            aver_testkit::skip(TEST, &reason);
            return;
        }
    };
    let svc = TestService::start(false).await;
    let base = svc.issuer().to_string();
    let admin = svc.service.new_admin_key.clone().unwrap();
    let ca = svc.service.tls.cert.clone();
    let junit = svc.dir.path().join("schemathesis-junit.xml");
    let args: Vec<String> = vec![
        "run".into(),
        format!("{base}/openapi.json"),
        "--url".into(),
        base.clone(),
        "--checks".into(),
        "not_a_server_error".into(),
        "--tls-verify".into(),
        ca.display().to_string(),
        "-H".into(),
        format!("Authorization: Bearer {admin}"),
        "--phases".into(),
        "examples,coverage,fuzzing".into(),
        "--max-examples".into(),
        "30".into(),
        "--seed".into(),
        "20261130".into(),
        "--generation-database".into(),
        "none".into(),
        // One worker: with several, CPython 3.11's parser can fail inside
        // Hypothesis ("AST constructor recursion depth mismatch"), a
        // schemathesis run error unrelated to the service.
        "--workers".into(),
        "1".into(),
        "--request-timeout".into(),
        "60".into(),
        "--no-color".into(),
        "--report".into(),
        "junit".into(),
        "--report-junit-path".into(),
        junit.display().to_string(),
    ];
    let workdir = svc.dir.path().to_path_buf();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(st)
            .args(&args)
            // Its cache directory (.schemathesis) goes there, not into
            // the source tree.
            .current_dir(workdir)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let tail: String = {
        let chars: Vec<char> = stdout.chars().collect();
        chars[chars.len().saturating_sub(20_000)..].iter().collect()
    };
    assert!(
        output.status.success(),
        "schemathesis found server errors (exit {:?}):\n{tail}\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
    // It did run: operations were tested.
    let report = std::fs::read_to_string(&junit).unwrap();
    let cases = report.matches("<testcase").count();
    assert!(cases >= 20, "only {cases} operations tested:\n{tail}");
    eprintln!("schemathesis: {cases} operations, no server error\n{tail}");
    svc.service.shutdown().await;
}
