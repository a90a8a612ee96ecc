//! A real S3-compatible server (moto).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use huiying::config::{Config, Secret};

use super::*;

/// A real S3-compatible server on loopback (moto in server mode), with one bucket.
pub struct S3Server {
    process: Child,
    pub endpoint: String,
    pub bucket: String,
}

impl S3Server {
    pub async fn start() -> Self {
        let port = free_port();
        let process = Command::new("python3")
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the tests need moto (pip install \"moto[server]\")");
        let endpoint = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let bucket = "pictures".to_string();
        let create = format!("{endpoint}/{bucket}");
        wait_for("the S3 server to create the bucket", Duration::from_secs(60), || async {
            http.put(&create).send().await.ok().filter(|r| r.status().is_success())
        })
        .await;
        Self { process, endpoint, bucket }
    }

    /// Points `[cloudflare_r2]` at this server.
    pub fn configure(&self, config: &mut Config) {
        let r2 = &mut config.cloudflare_r2;
        r2.endpoint = self.endpoint.clone();
        r2.bucket = self.bucket.clone();
        r2.access_key_id = "test-access-key".into();
        r2.access_key_secret = Secret::new("test-secret-key");
        r2.public_url = "https://pics.example.com".into();
    }

    /// An object's bytes and content type, read back from the server (signed, as the
    /// bucket is private; the public domain is R2's business).
    pub async fn object(&self, key: &str) -> Option<(Vec<u8>, String)> {
        S3Reader { endpoint: self.endpoint.clone(), bucket: self.bucket.clone() }.object(key).await
    }
}

impl S3Server {
    /// The bucket's public domain, as R2 gives one (`https://pics.example.com/<key>`): a
    /// loopback server answering GET with the object, read from the bucket with its key.
    /// Returns its base URL, for `[cloudflare_r2] public_url`.
    pub async fn serve_public_domain(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let server = S3Reader { endpoint: self.endpoint.clone(), bucket: self.bucket.clone() };
        let app = axum::Router::new().route(
            "/{*key}",
            axum::routing::get(move |axum::extract::Path(key): axum::extract::Path<String>| {
                let server = server.clone();
                async move {
                    use axum::response::IntoResponse;
                    match server.object(&key).await {
                        Some((bytes, content_type)) => {
                            ([(axum::http::header::CONTENT_TYPE, content_type)], bytes).into_response()
                        }
                        None => axum::http::StatusCode::NOT_FOUND.into_response(),
                    }
                }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        base
    }
}

/// Reads objects of a bucket on the test's S3 server.
#[derive(Clone)]
struct S3Reader {
    endpoint: String,
    bucket: String,
}

impl S3Reader {
    async fn object(&self, key: &str) -> Option<(Vec<u8>, String)> {
        use object_store::ObjectStore;
        let store = object_store::aws::AmazonS3Builder::new()
            .with_endpoint(&self.endpoint)
            .with_allow_http(true)
            .with_region("auto")
            .with_bucket_name(&self.bucket)
            .with_access_key_id("test-access-key")
            .with_secret_access_key("test-secret-key")
            .build()
            .unwrap();
        let object = store.get(&object_store::path::Path::from(key)).await.ok()?;
        let content_type = object.attributes.get(&object_store::Attribute::ContentType)?.to_string();
        Some((object.bytes().await.ok()?.to_vec(), content_type))
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}
