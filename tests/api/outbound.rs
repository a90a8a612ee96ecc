//! What huiying fetches from addresses others name (an edit's `image_url`): never
//! through a proxy that would look the name up again, never an address inside the
//! network, however it is written.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{FakeApi, TestApp, free_port, nats_password, service_program, tiny_png, wait_for};

/// A proxy on loopback that answers 502 to everything and remembers what it was asked.
async fn recording_proxy() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut request = vec![0u8; 4096];
            let read = socket.read(&mut request).await.unwrap_or(0);
            record.lock().unwrap().push(String::from_utf8_lossy(&request[..read]).lines().next().unwrap_or("").into());
            let _ = socket.write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n").await;
        }
    });
    (url, seen)
}

async fn edit(address: &str, image_url: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{address}/edit-image"))
        .json(&json!({"image_url": image_url, "edit_prompt": "make it blue"}))
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_input_url_is_fetched_directly_even_where_the_environment_names_a_proxy() {
    let app = TestApp::spawn().await;
    let pictures = FakeApi::start().await;
    let picture = pictures.serve_file("input.png", tiny_png());
    let (proxy, asked) = recording_proxy().await;
    // An ingest whose environment names the proxy, as users reaching OpenRouter through
    // one often have; the operator allows inputs on this network (the picture is on loopback).
    let port = free_port().to_string();
    let mut ingest = std::process::Command::new(service_program("ingest"))
        .arg("--config")
        .arg(app.config_file())
        .env_remove("HUIYING_CONFIG")
        .envs([("SERVER_PORT", port.as_str()), ("SERVER_ALLOW_PRIVATE_EDIT_INPUTS", "true"), ("RUST_LOG", "warn")])
        .envs([("HTTP_PROXY", proxy.as_str()), ("HTTPS_PROXY", proxy.as_str()), ("ALL_PROXY", proxy.as_str())])
        .envs([("http_proxy", proxy.as_str()), ("https_proxy", proxy.as_str()), ("NO_PROXY", "")])
        .envs([("NATS_USER", "ingest"), ("NATS_PASSWORD", nats_password("ingest").as_str())])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let address = format!("http://127.0.0.1:{port}");
    wait_for("the ingest process", Duration::from_secs(30), || async {
        reqwest::get(format!("{address}/health")).await.ok().filter(|r| r.status().is_success())
    })
    .await;

    let (status, answer) = edit(&address, &picture).await;
    ingest.kill().unwrap();
    ingest.wait().unwrap();
    assert_eq!(status, 200, "{answer}");
    assert!(asked.lock().unwrap().is_empty(), "the proxy was asked: {:?}", asked.lock().unwrap());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_input_url_inside_the_network_is_refused_however_its_address_is_written() {
    // Model answers may come from this network (the operator's own model); inputs may not.
    let app = TestApp::spawn_with(|config, _| config.generator.allow_private_urls = true).await;
    let pictures = FakeApi::start().await;
    let on_loopback = pictures.serve_file("input.png", tiny_png());
    let port = on_loopback.rsplit_once(':').unwrap().1.split('/').next().unwrap().to_string();
    for url in [
        on_loopback.clone(),
        format!("http://[64:ff9b::7f00:1]:{port}/files/input.png"), // NAT64 of 127.0.0.1
        format!("http://[2002:7f00:1::1]:{port}/files/input.png"),  // 6to4 of 127.0.0.1
        format!("http://[::ffff:127.0.0.1]:{port}/files/input.png"),
        "http://[64:ff9b::a9fe:a9fe]/latest/meta-data/".to_string(), // NAT64 of the metadata address
    ] {
        let (status, answer) = edit(&app.address, &url).await;
        assert_eq!(status, 400, "{url}: {answer}");
        let error = answer["error"].as_str().unwrap();
        assert!(error.contains("private or local address"), "{url}: {error}");
        assert!(error.contains("[server] allow_private_edit_inputs"), "{url}: the setting that allows it: {error}");
    }
}
