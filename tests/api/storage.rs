//! Where pictures end up: processed to the user's settings, on disk, and on R2 / S3.

use serde_json::{Value, json};

use crate::helpers::{S3Server, TestApp};

#[tokio::test(flavor = "multi_thread")]
async fn with_r2_configured_the_picture_is_uploaded_once_and_its_public_link_is_everywhere() {
    let s3 = S3Server::start().await;
    let app = TestApp::spawn_with(|config, _| s3.configure(config)).await;

    let response = app.post_generate(json!({"prompt": "a lighthouse in the cloud"})).await;

    assert_eq!(response.status(), 200);
    let url = response.json::<Value>().await.unwrap()["data"][0]["url"].as_str().unwrap().to_string();
    let filename = url.rsplit('/').next().unwrap().to_string();
    assert_eq!(url, format!("https://pics.example.com/images/{filename}"));
    let (bytes, content_type) = s3.object(&format!("images/{filename}")).await.expect("the object exists");
    assert_eq!(content_type, "image/jpeg");
    assert_eq!(
        bytes,
        std::fs::read(app.config.server.images_dir.join(&filename)).unwrap(),
        "same bytes as the local file"
    );
    let record = &app.records()[0];
    assert_eq!(record["r2_url"], url);
    let mail = &app.smtp.wait_for_mails(1).await[0];
    assert!(mail.html.contains(&format!("href=\"{url}\"")));
}

#[tokio::test(flavor = "multi_thread")]
async fn when_r2_fails_the_job_completes_with_the_local_file_and_the_record_says_why() {
    let closed = crate::helpers::free_port();
    let app = TestApp::spawn_with(|config, _| {
        let r2 = &mut config.cloudflare_r2;
        r2.endpoint = format!("http://127.0.0.1:{closed}");
        r2.bucket = "pictures".into();
        r2.access_key_id = "test".into();
        r2.access_key_secret = huiying::config::Secret::new("test-secret");
        r2.public_url = "https://pics.example.com".into();
    })
    .await;

    let response = app.post_generate(json!({"prompt": "grounded"})).await;

    assert_eq!(response.status(), 200);
    let url = response.json::<Value>().await.unwrap()["data"][0]["url"].as_str().unwrap().to_string();
    assert!(url.starts_with(&format!("{}/static/images/", app.address)), "{url}");
    let record = &app.records()[0];
    assert_eq!(record["r2_url"], "");
    assert!(record["r2_error"].contains("R2"), "{record:?}");
    assert!(!record["r2_error"].contains("test-secret"));
}

#[tokio::test(flavor = "multi_thread")]
async fn pictures_are_resized_to_fit_and_re_encoded_to_the_configured_format() {
    let app = TestApp::spawn_with(|config, _| {
        config.image_processing.max_width = 400;
        config.image_processing.max_height = 300;
        config.image_processing.format = huiying::config::ImageFormat::Png;
    })
    .await;

    // The placeholder draws at the requested size: portrait, landscape, tiny.
    for (size, expected) in [("600x1200", (150, 300)), ("1600x900", (400, 225)), ("64x64", (64, 64))] {
        let response = app.post_generate(json!({"prompt": format!("sized {size}"), "size": size})).await;
        let url = response.json::<Value>().await.unwrap()["data"][0]["url"].as_str().unwrap().to_string();
        assert!(url.ends_with(".png"), "{url}");
        let bytes = app.http.get(&url).send().await.unwrap().bytes().await.unwrap();
        assert_eq!(image::guess_format(&bytes).unwrap(), image::ImageFormat::Png);
        let picture = image::load_from_memory(&bytes).unwrap();
        assert_eq!((picture.width(), picture.height()), expected, "{size}");
    }
    let records = app.records();
    assert!(records.iter().all(|r| r["format"] == "png"));
    let sizes: Vec<(String, String)> = records.iter().map(|r| (r["width"].clone(), r["height"].clone())).collect();
    assert_eq!(sizes, vec![("150".into(), "300".into()), ("400".into(), "225".into()), ("64".into(), "64".into())]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_private_buckets_picture_is_linked_through_huiying_and_redirected_to_a_url_valid_15_minutes() {
    let s3 = S3Server::start().await;
    // No public domain: the bucket is private.
    let app = TestApp::spawn_with(|config, _| {
        s3.configure(config);
        config.cloudflare_r2.public_url = String::new();
    })
    .await;

    let response = app.post_generate(json!({"prompt": "a lighthouse nobody else sees"})).await;
    assert_eq!(response.status(), 200);
    let url = response.json::<Value>().await.unwrap()["data"][0]["url"].as_str().unwrap().to_string();
    let filename = url.rsplit('/').next().unwrap().to_string();
    assert_eq!(url, format!("{}/r2/images/{filename}", app.address), "the link is huiying's, not the bucket's");
    assert_eq!(app.records()[0]["r2_url"], url, "no presigned URL in the record");
    let mail = &app.smtp.wait_for_mails(1).await[0];
    assert!(mail.html.contains(&format!("href=\"{url}\"")) && !mail.html.contains("X-Amz"), "nor in the mail");

    let not_following = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let answer = not_following.get(&url).send().await.unwrap();
    assert_eq!(answer.status(), 302);
    let target = answer.headers()["location"].to_str().unwrap().to_string();
    assert!(target.starts_with(&s3.endpoint), "{target}");
    let expires: u64 =
        target.split(['?', '&']).find_map(|p| p.strip_prefix("X-Amz-Expires=")).unwrap().parse().unwrap();
    assert!(expires <= 15 * 60, "the presigned URL lives {expires} s");
    let bytes = app.http.get(&target).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(bytes.to_vec(), std::fs::read(app.config.server.images_dir.join(&filename)).unwrap());
}
