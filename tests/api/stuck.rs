//! Never stuck, never flooded: a peer that stops answering, or a request made to hurt,
//! costs its own work a retry or a refusal, never the pipeline.

use std::collections::HashSet;
use std::time::Duration;

use base64::Engine;
use huiying::config::TlsMode;
use serde_json::json;

use crate::helpers::{SilentSmtp, TestApp, wait_for};

#[tokio::test(flavor = "multi_thread")]
async fn a_mail_server_that_takes_mails_and_never_answers_costs_each_a_retry_and_every_mail_arrives() {
    // It swallows the first four mails (as many as the mailer has sessions) and goes
    // silent on each; after that it answers.
    let server = SilentSmtp::start(4).await;
    let app = TestApp::spawn_with(|config, _| {
        config.smtp.host = "127.0.0.1".into();
        config.smtp.port = server.port;
        config.smtp.tls = TlsMode::None;
        config.smtp.username = String::new();
        config.smtp.timeout = Duration::from_secs(2);
    })
    .await;
    let mut jobs = Vec::new();
    for n in 0..5 {
        jobs.push(app.submit(json!({"prompt": format!("a lighthouse, picture {n}")})).await);
    }
    // Every job's mail is answered once: the four that met silence were sent again.
    let taken = wait_for("every mail answered", Duration::from_secs(60), || async {
        let taken = server.taken();
        (taken.iter().filter(|mail| mail.answered).count() == jobs.len()).then_some(taken)
    })
    .await;
    let answered: Vec<&str> = taken.iter().filter(|m| m.answered).map(|m| m.message_id.as_str()).collect();
    assert_eq!(answered.iter().collect::<HashSet<_>>().len(), jobs.len(), "one answered mail per job: {taken:?}");
    for job in &jobs {
        assert!(answered.iter().any(|id| id.contains(job.as_str())), "{job}'s mail: {taken:?}");
    }
    // A mail sent again keeps its Message-ID, so a reader's client can tell it is one.
    for silent in taken.iter().filter(|mail| !mail.answered) {
        assert!(answered.contains(&silent.message_id.as_str()), "{silent:?} was never sent again");
    }
    // And the mail log says sent for each job.
    let log = app.mail_log().await;
    for job in &jobs {
        assert!(log.iter().any(|entry| entry["job_id"] == job.as_str() && entry["state"] == "sent"), "{log:?}");
    }
}

/// A PNG that says `width` × `height`, 16 bits per channel, RGBA, with a first sliver of
/// its pixel data: a header any decoder reads, in a few dozen bytes.
fn deep_png_header(width: u32, height: u32) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut encoder = png::Encoder::new(&mut bytes, width, height);
    encoder.set_color(png::ColorType::Rgba);
    encoder.set_depth(png::BitDepth::Sixteen);
    let mut writer = encoder.write_header().unwrap();
    // A zlib stream of a few zero bytes (the start of the first row).
    writer.write_chunk(png::chunk::IDAT, &[0x78, 0x9c, 0x63, 0x60, 0x00, 0x00, 0x00, 0x02, 0x00, 0x01]).unwrap();
    drop(writer);
    bytes
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upload_that_would_decode_to_hundreds_of_megabytes_is_refused_from_its_header() {
    let app = TestApp::spawn().await;
    // 40 megapixels at 8 bytes a pixel: 320 MB decoded, from a file of a few dozen bytes.
    let upload = |bytes: Vec<u8>| {
        let body = json!({
            "base64_data": base64::engine::general_purpose::STANDARD.encode(bytes),
            "file_name": "deep.png",
        });
        app.http.post(format!("{}/upload-image", app.address)).json(&body).send()
    };
    let response = upload(deep_png_header(8000, 5000)).await.unwrap();
    assert_eq!(response.status(), 413);
    let answer: serde_json::Value = response.json().await.unwrap();
    let error = answer["error"].as_str().unwrap();
    assert!(error.contains("8000×5000") && error.contains("320 MB") && error.contains("at most 160 MB"), "{error}");
    // The next ordinary job still completes.
    let id = app.submit(json!({"prompt": "after the deep picture"})).await;
    assert_eq!(app.wait_for_job(&id).await["status"], "completed");
    assert!(app.smtp.wait_for_mails(1).await[0].text.contains("after the deep picture"), "and its mail arrives");
}

/// A PNG of noise, which does not compress: about 3 × `side`² bytes.
fn noise_png(side: u32) -> Vec<u8> {
    let mut state = 0x2545_f491_u32;
    let noise = image::RgbImage::from_fn(side, side, |_, _| {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        image::Rgb([state as u8, (state >> 8) as u8, (state >> 16) as u8])
    });
    let mut bytes = std::io::Cursor::new(Vec::new());
    noise.write_to(&mut bytes, image::ImageFormat::Png).unwrap();
    bytes.into_inner()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_picture_bucket_turns_new_jobs_away_with_503_until_there_is_room() {
    // A bucket of 2 MiB ([nats] bucket_max_bytes), filled by one upload of about 1.9 MB.
    let app = TestApp::spawn_with(|config, _| config.nats.bucket_max_bytes = 2 << 20).await;
    let upload = json!({
        "base64_data": base64::engine::general_purpose::STANDARD.encode(noise_png(800)),
        "file_name": "noise.png",
    });
    let response = app.http.post(format!("{}/upload-image", app.address)).json(&upload).send().await.unwrap();
    assert_eq!(response.status(), 201);

    // New jobs are turned away, saying why and when to come back, rather than failing on the
    // way (once ingest has read the bucket's size: it does so at most once a second).
    let refused = wait_for("ingest to see the bucket full", Duration::from_secs(10), || async {
        let response = app.request_async(json!({"prompt": "no room"})).send().await.unwrap();
        (response.status() == 503).then_some(response)
    })
    .await;
    assert_eq!(refused.headers()["retry-after"], "30");
    let answer: serde_json::Value = refused.json().await.unwrap();
    assert!(answer["error"].as_str().unwrap().contains("picture bucket is full"), "{answer}");

    // The operator makes room (a larger bound); the next ordinary job completes.
    let js = async_nats::jetstream::new(app.nats.clone());
    let mut stream = js.get_stream(format!("OBJ_{}", huiying::contract::IMAGES_BUCKET)).await.unwrap();
    let mut config = stream.info().await.unwrap().config.clone();
    config.max_bytes = 64 << 20;
    js.update_stream(config).await.unwrap();
    let id = wait_for("a job to be taken again", Duration::from_secs(10), || async {
        let response = app.request_async(json!({"prompt": "room again"})).send().await.unwrap();
        match response.status().as_u16() {
            202 => Some(response.json::<serde_json::Value>().await.unwrap()["id"].as_str().unwrap().to_string()),
            _ => None,
        }
    })
    .await;
    assert_eq!(app.wait_for_job(&id).await["status"], "completed");
    wait_for("its mail", Duration::from_secs(30), || async {
        app.smtp.mails().iter().any(|mail| mail.text.contains("room again")).then_some(())
    })
    .await;
}
