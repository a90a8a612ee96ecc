//! The store stage on in-memory parts and a real SQLite file in a temporary folder.

use bytes::Bytes;

use super::*;
use crate::contract::JOBS_BUCKET;
use crate::contract::events::IMAGE_GENERATED;
use crate::contract::records::thumbnail_name;
use crate::parts::JsonBucket;
use crate::parts::memory::{MemoryKv, MemoryObjects, MemoryStream};

struct Parts {
    stream: Arc<MemoryStream>,
    objects: Arc<MemoryObjects>,
    jobs: JobBoard,
    records: Records,
    dir: tempfile::TempDir,
}

fn store() -> (Store, Parts) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.server.images_dir = dir.path().join("images");
    let records = Records::Sqlite(records::SqliteRecords::open(&dir.path().join("huiying.db")).unwrap());
    let parts = Parts {
        stream: Arc::new(MemoryStream::default()),
        objects: Arc::new(MemoryObjects::default()),
        jobs: JobBoard::new(JsonBucket::new(Arc::new(MemoryKv::new(JOBS_BUCKET)))),
        records: records.clone(),
        dir,
    };
    let store = Store::new(&config, records, parts.stream.clone(), parts.jobs.clone(), parts.objects.clone()).unwrap();
    (store, parts)
}

fn png(width: u32, height: u32) -> Vec<u8> {
    let mut bytes = std::io::Cursor::new(Vec::new());
    image::RgbImage::from_pixel(width, height, image::Rgb([200, 80, 40]))
        .write_to(&mut bytes, image::ImageFormat::Png)
        .unwrap();
    bytes.into_inner()
}

fn generated(id: &str) -> ImageGenerated {
    let now = OffsetDateTime::now_utc();
    ImageGenerated {
        cost: Default::default(),
        owner: None,
        group: None,
        version: EVENT_VERSION,
        id: id.into(),
        prompt: "一只狐狸".into(),
        english_prompt: "a red fox".into(),
        model: "huiying/placeholder".into(),
        provider: "placeholder".into(),
        picture: PictureAt::Object { bucket: crate::contract::IMAGES_BUCKET.into(), object: id.into() },
        content_type: "image/png".into(),
        byte_size: 0,
        attempts: 1,
        notify_email: None,
        callback: Default::default(),
        ignored_options: Vec::new(),
        fallback: None,
        user: None,
        kind: Default::default(),
        inputs: Vec::new(),
        requested_at: now,
        generated_at: now,
    }
}

fn delivery(event: &ImageGenerated, attempt: u32) -> Received {
    Received {
        subject: IMAGE_GENERATED.into(),
        payload: Bytes::from(serde_json::to_vec(event).unwrap()),
        attempt,
        stream: "HUIYING".into(),
        stream_sequence: 1,
        published: OffsetDateTime::now_utc(),
    }
}

fn files(parts: &Parts) -> Vec<String> {
    std::fs::read_dir(parts.dir.path().join("images"))
        .unwrap()
        .map(|entry| entry.unwrap())
        .filter(|entry| entry.path().is_file())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect()
}

#[tokio::test]
async fn a_generated_picture_becomes_a_file_a_record_and_an_image_completed_event() {
    let (store, parts) = store();
    parts.objects.put("job-1", &png(64, 48)).await.unwrap();
    store.handle(delivery(&generated("job-1"), 1)).await.unwrap();
    let completed = parts.stream.events::<ImageCompleted>();
    assert_eq!(completed.len(), 1);
    assert_eq!((completed[0].width, completed[0].height, completed[0].format.as_str()), (64, 48, "jpeg"));
    assert_eq!(files(&parts), [completed[0].filename.clone()]);
    // Its thumbnail beside it: a small JPEG a gallery shows instead.
    let thumbnail = parts.dir.path().join("images").join(thumbnail_name(&completed[0].filename));
    let small = image::open(&thumbnail).unwrap();
    assert_eq!((small.width(), small.height()), (64, 48), "a small picture is not enlarged");
    assert!(completed[0].filename.contains("red_fox"), "{}", completed[0].filename);
    let record = parts.records.by_job("job-1").await.unwrap().unwrap();
    assert_eq!(record.original_prompt, "一只狐狸");
    assert_eq!(parts.jobs.get("job-1").await.unwrap().unwrap().status, JobState::Completed);
}

#[tokio::test]
async fn a_picture_carried_in_the_event_is_stored_without_the_object_store() {
    let (store, parts) = store();
    let carried = ImageGenerated { picture: PictureAt::Inline { picture_base64: png(40, 30) }, ..generated("job-2") };
    store.handle(delivery(&carried, 1)).await.unwrap();
    let completed = parts.stream.events::<ImageCompleted>();
    assert_eq!((completed.len(), completed[0].width, completed[0].height), (1, 40, 30));
    assert_eq!(files(&parts), [completed[0].filename.clone()]);
}

#[tokio::test]
async fn a_redelivery_writes_nothing_twice() {
    let (store, parts) = store();
    parts.objects.put("job-1", &png(32, 32)).await.unwrap();
    for attempt in 1..=3 {
        store.handle(delivery(&generated("job-1"), attempt)).await.unwrap();
    }
    assert_eq!(parts.stream.events::<ImageCompleted>().len(), 1);
    assert_eq!(files(&parts).len(), 1);
    let query = crate::contract::records::RecordQuery { limit: 10, ..Default::default() };
    assert_eq!(parts.records.query(&query).await.unwrap().total, 1);
}

#[tokio::test]
async fn an_unusable_picture_ends_the_job_at_stage_store_writes_no_file_and_its_event_is_rejected() {
    let (store, parts) = store();
    parts.objects.put("corrupt", b"\x89PNG but not really").await.unwrap();
    // Rejected: the loop keeps the event as a dead letter instead of trying it again.
    for job in ["corrupt", "missing"] {
        let rejected = store.handle(delivery(&generated(job), 1)).await.unwrap_err();
        assert!(!rejected.is_transient(), "{rejected}");
    }
    let failed = parts.stream.events::<ImageFailed>();
    assert_eq!(failed.len(), 2);
    assert!(failed.iter().all(|f| f.stage == JobStage::Store && !f.transient));
    assert!(failed[1].error.contains("no longer in the object store"), "{}", failed[1].error);
    assert!(files(&parts).is_empty());
    assert_eq!(parts.jobs.get("corrupt").await.unwrap().unwrap().status, JobState::Failed);
}

#[tokio::test]
async fn while_nats_is_away_the_stored_picture_is_announced_later_and_once() {
    let (store, parts) = store();
    parts.objects.put("job-1", &png(32, 32)).await.unwrap();
    parts.stream.set_down(true);
    let failure = store.handle(delivery(&generated("job-1"), 1)).await.unwrap_err();
    assert!(failure.is_transient(), "{failure}");
    parts.stream.set_down(false);
    store.handle(delivery(&generated("job-1"), 2)).await.unwrap();
    assert_eq!(parts.stream.events::<ImageCompleted>().len(), 1);
    assert_eq!(files(&parts).len(), 1, "the first attempt's file is the one announced");
}

#[tokio::test]
async fn a_picture_drawn_for_a_job_cancelled_meanwhile_is_discarded() {
    let (store, parts) = store();
    parts.objects.put("job-1", &png(32, 32)).await.unwrap();
    let asked =
        crate::contract::jobs::CancelRequest { requested_at: OffsetDateTime::now_utc(), notify: true, by: None };
    parts.jobs.request_cancel("job-1", &asked).await.unwrap();
    store.handle(delivery(&generated("job-1"), 1)).await.unwrap();
    assert!(files(&parts).is_empty(), "no file");
    assert!(parts.records.by_job("job-1").await.unwrap().is_none(), "no record");
    assert!(parts.stream.events::<ImageCompleted>().is_empty());
    let failed = parts.stream.events::<ImageFailed>();
    assert_eq!((failed.len(), failed[0].stage), (1, JobStage::Cancelled));
    assert_eq!(failed[0].cancelled.as_ref().map(|c| c.notify), Some(true), "the canceller's wish travels on");
    assert_eq!(parts.jobs.get("job-1").await.unwrap().unwrap().status, JobState::Cancelled);
}

/// The states the job is shown in while `work` runs, in order.
async fn states_shown(parts: &Parts, id: &str, work: impl std::future::Future) -> Vec<JobState> {
    use futures::{FutureExt, StreamExt};
    let mut watch = parts.jobs.watch(id).await.unwrap();
    work.await;
    let mut shown = Vec::new();
    while let Some(Some(status)) = watch.next().now_or_never() {
        shown.push(status.unwrap().status);
    }
    shown
}

#[tokio::test]
async fn a_picture_stored_at_once_goes_from_generating_to_completed() {
    let (store, parts) = store();
    parts.objects.put("job-1", &png(32, 32)).await.unwrap();
    let generating = JobStatus::new(&"job-1".into(), JobState::Generating, "一只狐狸", None);
    parts.jobs.set(&generating).await.unwrap();
    let shown = states_shown(&parts, "job-1", store.handle(delivery(&generated("job-1"), 1))).await;
    assert_eq!(shown, [JobState::Generating, JobState::Completed], "no storing nobody could see");
}

#[tokio::test]
async fn storing_that_takes_long_is_shown_before_completed() {
    let (mut store, parts) = store();
    store.storing_shown_after = Duration::ZERO;
    parts.objects.put("job-1", &png(32, 32)).await.unwrap();
    let shown = states_shown(&parts, "job-1", store.handle(delivery(&generated("job-1"), 1))).await;
    assert_eq!(shown, [JobState::Storing, JobState::Completed]);
}

#[tokio::test]
async fn a_store_that_cannot_write_shows_storing_until_a_retry_succeeds() {
    let (store, parts) = store();
    parts.objects.put("job-1", &png(32, 32)).await.unwrap();
    // The pictures' folder is gone and a file is in its place: every write fails.
    let images = parts.dir.path().join("images");
    std::fs::remove_dir_all(&images).unwrap();
    std::fs::write(&images, b"not a folder").unwrap();
    let failure = store.handle(delivery(&generated("job-1"), 1)).await.unwrap_err();
    assert!(failure.is_transient(), "{failure}");
    assert_eq!(parts.jobs.get("job-1").await.unwrap().unwrap().status, JobState::Storing);

    std::fs::remove_file(&images).unwrap();
    store.handle(delivery(&generated("job-1"), 2)).await.unwrap();
    assert_eq!(parts.jobs.get("job-1").await.unwrap().unwrap().status, JobState::Completed);
    assert_eq!(files(&parts).len(), 1);
}

#[tokio::test]
async fn a_redelivery_of_a_stored_job_never_sets_it_back_to_storing() {
    let (mut store, parts) = store();
    store.storing_shown_after = Duration::ZERO;
    parts.objects.put("job-1", &png(32, 32)).await.unwrap();
    store.handle(delivery(&generated("job-1"), 1)).await.unwrap();
    let shown = states_shown(&parts, "job-1", store.handle(delivery(&generated("job-1"), 2))).await;
    assert_eq!(shown, [JobState::Completed, JobState::Completed], "announced again, never storing");
}
