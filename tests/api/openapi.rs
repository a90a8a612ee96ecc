//! The API's description: `/openapi.json` (OpenAPI 3.1, generated from the handlers) and
//! Swagger UI at `/docs`, checked against the running pipeline by schemathesis.

use std::process::Command;

use serde_json::Value;

use crate::helpers::TestApp;

#[tokio::test(flavor = "multi_thread")]
async fn the_description_covers_the_api_and_the_docs_page_needs_no_internet() {
    let app =
        TestApp::spawn_with(|config, _| config.server.api_keys = vec![huiying::config::Secret::new("hy-key-1")]).await;
    let document: Value =
        app.http.get(format!("{}/openapi.json", app.address)).send().await.unwrap().json().await.unwrap();
    assert_eq!(document["openapi"], "3.1.0");
    for path in [
        "/generate-image",
        "/jobs/{id}",
        "/jobs/{id}/cancel",
        "/jobs/{id}/events",
        "/records",
        "/edit-image",
        "/v1/images/generations",
    ] {
        assert!(document["paths"][path].is_object(), "{path} is described");
    }
    assert!(document["components"]["schemas"]["JobStatus"].is_object());

    // Swagger UI, with every file it loads served by huiying itself, without a key.
    let page = app.http.get(format!("{}/docs", app.address)).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("/openapi.json"));
    let sources: Vec<&str> = page.split(['"', '\'']).filter(|s| s.ends_with(".js") || s.ends_with(".css")).collect();
    assert!(sources.len() >= 2, "{page}");
    for source in sources {
        assert!(source.starts_with('/'), "{source} is not on another host");
        let response = app.http.get(format!("{}{source}", app.address)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{source}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_no_server_error_anywhere_in_the_api() {
    let app = TestApp::spawn().await;
    // Through python3, as the deps script installed it: the script's folder may not be on PATH.
    let output = Command::new("python3")
        .args(["-m", "schemathesis.cli", "run", &format!("{}/openapi.json", app.address)])
        .args(["--checks", "not_a_server_error", "--max-examples", "10", "--seed", "20261202"])
        // Event streams never end; jobs are accepted at once so nothing waits for pictures.
        .args(["--exclude-path-regex", "events$", "-H", "Prefer: respond-async", "--no-color"])
        .output()
        .expect("schemathesis is installed (scripts/install-test-deps.sh)");
    let report = String::from_utf8_lossy(&output.stdout);
    println!("{report}");
    assert!(
        output.status.success(),
        "schemathesis found failures:\n{report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(report.contains("passed"), "{report}");
}
