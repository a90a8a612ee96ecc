//! AI-content labels (GB 45438-2025): every picture the pipeline stores says that an AI
//! made it, in its metadata (read here by an independent reader, exiftool) and in a
//! visible corner; the record and the job say which labels it carries.

use serde_json::{Value, json};

use crate::helpers::{S3Server, TestApp};
use huiying::config::ImageFormat;

const PRODUCER: &str = "绘影测试运营者 91110000MA00000000";
const TRAINED: &str = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia";

/// exiftool's reading of a picture (`-n`: values as written, `-G1`: keys by XMP namespace).
fn exiftool(bytes: &[u8], extension: &str) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("picture.{extension}"));
    std::fs::write(&path, bytes).unwrap();
    let output = std::process::Command::new("exiftool")
        .args(["-j", "-n", "-G1"])
        .arg(&path)
        .output()
        .expect("exiftool runs (Debian's libimage-exiftool-perl; scripts/install-test-deps.sh)");
    assert!(output.status.success(), "exiftool: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice::<Value>(&output.stdout).unwrap()[0].clone()
}

/// The TC260 `AIGC` value exiftool found (it names the tag `Aigc`), as JSON.
fn aigc(metadata: &Value) -> Option<Value> {
    metadata["XMP-TC260:Aigc"].as_str().map(|text| serde_json::from_str(text).expect("AIGC is JSON"))
}

/// Asks for a picture and returns the finished job and the stored file's bytes.
async fn make_picture(app: &TestApp, request: Value) -> (Value, Vec<u8>) {
    let id = app.submit(request).await;
    let job = app.wait_for_job(&id).await;
    assert_eq!(job["status"], "completed", "{job}");
    let filename = job["result"]["filename"].as_str().unwrap();
    let bytes = std::fs::read(app.config.server.images_dir.join(filename)).unwrap();
    (job, bytes)
}

async fn restart_store(app: &mut TestApp, implicit: bool, explicit: bool) {
    app.stop_service("store").await;
    app.start_service_with("store", |config| {
        config.labels.implicit = implicit;
        config.labels.explicit = explicit;
    });
}

fn record_labels(app: &TestApp, job_id: &str) -> (String, String) {
    let records = app.records();
    let record = records.iter().find(|r| r["job_id"] == job_id).expect("a record");
    (record["implicit_label"].clone(), record["explicit_label"].clone())
}

#[tokio::test(flavor = "multi_thread")]
async fn every_format_carries_the_implicit_label_that_exiftool_reads() {
    for (format, extension) in [(ImageFormat::Jpeg, "jpg"), (ImageFormat::Png, "png"), (ImageFormat::Webp, "webp")] {
        let app = TestApp::spawn_with(|config, _| {
            config.image_processing.format = format;
            config.labels.producer = PRODUCER.into();
        })
        .await;

        let (job, bytes) = make_picture(&app, json!({"prompt": "一座灯塔 a lighthouse"})).await;

        let id = job["id"].as_str().unwrap();
        let metadata = exiftool(&bytes, extension);
        let label = aigc(&metadata).unwrap_or_else(|| panic!("{format:?}: no AIGC label in {metadata:#}"));
        assert_eq!(label["Label"], "1", "{format:?}");
        assert_eq!(label["ContentProducer"], PRODUCER);
        assert_eq!(label["ProduceID"], id);
        assert_eq!(label["PropagateID"], job["result"]["filename"]);
        assert_eq!(label["ContentPropagator"], app.address.as_str());
        // A digest of the pixels (PNG, WebP) or of the coded picture (JPEG: `sha256-jpeg:`).
        assert!(label["ReservedCode1"].as_str().unwrap().starts_with("sha256"), "{label}");
        assert_eq!(metadata["XMP-iptcExt:DigitalSourceType"], TRAINED, "{format:?}: {metadata:#}");
        assert_eq!(metadata["XMP-xmp:CreatorTool"], "huiying/placeholder");
        assert_eq!(job["result"]["labels"], json!({"implicit": true, "explicit": true}));
        assert_eq!(record_labels(&app, id), ("1".into(), "1".into()));

        // The operator's own check agrees, and the pixels are the ones labelled.
        let path = app.config.server.images_dir.join(job["result"]["filename"].as_str().unwrap());
        let check = app.huiying(&["labels", "check", path.to_str().unwrap()], &[]);
        let printed = String::from_utf8_lossy(&check.stdout);
        assert_eq!(check.status.code(), Some(0), "{printed}");
        assert!(printed.contains(&format!("ProduceID: {id}")), "{printed}");
        assert!(printed.contains("matches the pixels"), "{format:?}: {printed}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn labels_survive_the_upload_and_the_mail_attachment_and_the_mail_says_ai() {
    let s3 = S3Server::start().await;
    let app = TestApp::spawn_with(|config, _| {
        s3.configure(config);
        config.smtp.attach_image = true;
        config.labels.producer = PRODUCER.into();
    })
    .await;

    let (job, local) = make_picture(&app, json!({"prompt": "a lighthouse in the cloud"})).await;

    let id = job["id"].as_str().unwrap();
    let filename = job["result"]["filename"].as_str().unwrap();
    let (uploaded, _) = s3.object(&format!("images/{filename}")).await.expect("uploaded");
    let mail = &app.smtp.wait_for_mails(1).await[0];
    assert_eq!(mail.images.len(), 1, "{:?}", mail.content_types);
    for (copy, bytes) in [("local file", &local), ("R2 copy", &uploaded), ("mail attachment", &mail.images[0])] {
        let metadata = exiftool(bytes, "jpg");
        let label = aigc(&metadata).unwrap_or_else(|| panic!("{copy}: no AIGC label"));
        assert_eq!(label["ProduceID"], id, "{copy}");
        assert_eq!(label["ContentPropagator"], "https://pics.example.com", "{copy}: the public URL");
        assert_eq!(metadata["XMP-iptcExt:DigitalSourceType"], TRAINED, "{copy}");
    }
    assert!(mail.html.contains(">AI生成</span>"), "the badge beside the picture: {}", mail.html);
    assert!(mail.text.contains("AI生成"));
}

#[tokio::test(flavor = "multi_thread")]
async fn each_label_can_be_turned_off_and_the_record_says_so() {
    let mut app = TestApp::spawn_with(|config, _| {
        config.image_processing.format = ImageFormat::Png;
        config.labels.implicit = false;
        config.labels.explicit = false;
    })
    .await;
    // The same prompt and size each time: the placeholder draws the same picture.
    let request = json!({"prompt": "同一幅画 the same picture", "size": "1920x1080"});
    let decode = |bytes: &[u8]| image::load_from_memory(bytes).unwrap().to_rgb8();

    let (bare_job, bare) = make_picture(&app, request.clone()).await;
    assert_eq!(bare_job["result"]["labels"], json!({"implicit": false, "explicit": false}));
    assert_eq!(record_labels(&app, bare_job["id"].as_str().unwrap()), ("0".into(), "0".into()));
    assert_eq!(aigc(&exiftool(&bare, "png")), None);
    let path = app.config.server.images_dir.join(bare_job["result"]["filename"].as_str().unwrap());
    let check = app.huiying(&["labels", "check", path.to_str().unwrap()], &[]);
    assert_eq!(check.status.code(), Some(1), "no implicit label: exit 1");
    let bare = decode(&bare);
    assert_eq!(bare.dimensions(), (1920, 1080));

    restart_store(&mut app, true, false).await;
    let (implicit_job, implicit) = make_picture(&app, request.clone()).await;
    assert_eq!(implicit_job["result"]["labels"], json!({"implicit": true, "explicit": false}));
    assert!(aigc(&exiftool(&implicit, "png")).is_some());
    assert!(decode(&implicit) == bare, "the implicit label leaves every pixel as it was");

    restart_store(&mut app, false, true).await;
    let (visible_job, visible) = make_picture(&app, request).await;
    assert_eq!(visible_job["result"]["labels"], json!({"implicit": false, "explicit": true}));
    assert_eq!(record_labels(&app, visible_job["id"].as_str().unwrap()), ("0".into(), "1".into()));
    let visible = decode(&visible);
    let changed: Vec<(u32, u32)> =
        bare.enumerate_pixels().filter(|(x, y, p)| visible.get_pixel(*x, *y) != *p).map(|(x, y, _)| (x, y)).collect();
    assert!(changed.len() > 1000, "the label is visible: {} pixels changed", changed.len());
    assert!(changed.iter().all(|&(x, y)| x >= 1440 && y >= 810), "only the bottom-right corner changes");
    let rows = changed.iter().map(|&(_, y)| y).max().unwrap() - changed.iter().map(|&(_, y)| y).min().unwrap() + 1;
    assert!(rows >= 54, "the label covers at least 5% of the shorter side: {rows} rows");
}
