//! More than one machine: the services on a real three-node nats-server cluster with
//! three replicas of everything, and what an operator sees when the settings disagree.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use serde_json::json;

use huiying::config::Secret;
use huiying::contract::records::RecordQuery;
use huiying::store::records::{Records, SqliteRecords};

use crate::helpers::{
    NatsCluster, PostgresDatabase, S3Server, TestApp, WEBHOOK_SECRET, WebhookReceiver, nats_password, wait_for,
};

/// Jobs the steady load submits, and how fast.
const JOBS: usize = 300;
const PER_SECOND: f64 = 20.0;

#[tokio::test(flavor = "multi_thread")]
async fn killing_the_stream_leader_under_load_loses_no_job_and_doubles_nothing() {
    // A delivery whose acknowledgement is lost with the node comes again after ack_wait;
    // 5 s (not the default 60) lets the test see that it is not sent twice, sooner.
    let mut app = TestApp::spawn_on_cluster(NatsCluster::start().await, |config, _| {
        config.nats.ack_wait = Duration::from_secs(5)
    })
    .await;
    let js = jetstream::new(app.nats.clone());
    for stream in
        ["HUIYING", "HUIYING_DEAD", "HUIYING_WEBHOOKS", "KV_huiying_jobs", "KV_huiying_mail", "OBJ_huiying_images"]
    {
        let replicas = wait_for(&format!("{stream} to be created"), Duration::from_secs(20), || async {
            Some(js.get_stream(stream).await.ok()?.cached_info().config.num_replicas)
        })
        .await;
        assert_eq!(replicas, 3, "{stream} has three copies");
    }

    // Every service set up (its streams, buckets and consumers made) before the load: a
    // service still starting when the leader dies is another story.
    every_service_answers(&app).await;

    let started = Instant::now();
    let load = tokio::spawn(submit_steadily(app.http.clone(), app.address.clone(), JOBS, PER_SECOND));
    // Five seconds into the load, the node leading the event stream dies as in a crash
    // (SIGKILL), and comes back ten seconds later.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let leader = stream_leader(&js).await;
    let killed_at = started.elapsed();
    let node = app.nats_nodes_mut().find(|node| node.name == leader).expect("the leader is one of ours");
    node.kill();
    // Asked of a node that lives: the test's own connection may have been to the dead one.
    let survivor = app.nats_nodes_mut().find(|node| node.name != leader).unwrap().url.clone();
    let mut survivor = jetstream::new(crate::helpers::connect_as(&survivor, "admin").await.unwrap());
    // Unanswered while no node leads: asked again soon rather than after 5 s.
    survivor.set_timeout(Duration::from_millis(300));
    let new_leader = wait_for("another node to lead the event stream", Duration::from_secs(30), || async {
        let mut stream = survivor.get_stream(huiying::contract::STREAM).await.ok()?;
        stream.info().await.ok()?.cluster.clone()?.leader.filter(|now| *now != leader)
    })
    .await;
    let elected_after = started.elapsed() - killed_at;
    let node = app.nats_nodes_mut().find(|node| node.name == leader).expect("the leader is one of ours");
    tokio::time::sleep(Duration::from_secs(10).saturating_sub(elected_after)).await;
    node.restart().await;
    let submitted = load.await.unwrap();

    for id in &submitted.accepted {
        let job = last_state_within(&app, id, Duration::from_secs(90)).await;
        assert_eq!(job["status"], "completed", "{job}");
    }
    app.wait_until_consumer_idle("mailer").await;
    let finished_in = started.elapsed();

    let (records_per_job, mails_per_job) = (records_per_job(&app), mails_per_job(&app));
    let mut completed_at: Vec<String> = app.records().iter().map(|record| record["created_at"].clone()).collect();
    let doubled_records = records_per_job.values().filter(|&&n| n > 1).count();
    let doubled_mails = mails_per_job.values().filter(|&&n| n > 1).count();
    completed_at.sort();
    let longest_stall = longest_gap(&completed_at);
    println!(
        "cluster failover: {JOBS} jobs at {PER_SECOND}/s; leader {leader} killed at {:.1} s, back 10 s later \
         (new leader {new_leader}, elected {:.1} s after); accepted {}, refused or unanswered {}; \
         completed {}; records {}, mails {}; doubled records {doubled_records}, doubled mails {doubled_mails}; \
         longest accept {:.2} s; longest stall between completions {:.2} s; all done in {:.1} s",
        killed_at.as_secs_f64(),
        elected_after.as_secs_f64(),
        submitted.accepted.len(),
        submitted.refused,
        records_per_job.len(),
        records_per_job.values().sum::<usize>(),
        mails_per_job.values().sum::<usize>(),
        submitted.longest_accept.as_secs_f64(),
        longest_stall,
        finished_in.as_secs_f64(),
    );

    assert_eq!(submitted.refused, 0, "every request answered 202 at the first try: held, not refused");
    assert_eq!(submitted.accepted.len(), JOBS);
    for id in &submitted.accepted {
        assert_eq!(records_per_job.get(id), Some(&1), "job {id}: one record");
        assert_eq!(mails_per_job.get(id), Some(&1), "job {id}: one mail");
    }
    let unasked = |seen: &HashMap<String, usize>| -> Vec<String> {
        seen.keys().filter(|job| !submitted.accepted.contains(job)).cloned().collect()
    };
    assert_eq!(records_per_job.len(), JOBS, "records of jobs nobody asked for: {:?}", unasked(&records_per_job));
    assert_eq!(mails_per_job.len(), JOBS, "mails of jobs nobody asked for: {:?}", unasked(&mails_per_job));
}

/// The pipeline's consumers, each on the `HUIYING` stream.
const CONSUMERS: [&str; 4] = ["generator", "store", "mailer", "webhook"];

#[tokio::test(flavor = "multi_thread")]
async fn every_node_stopping_at_once_replays_the_stream_and_sends_nothing_twice() {
    // On a cluster the consumers keep their place in memory (docs/cluster.md): a node lost
    // is nothing, but when every node stops at once the place is forgotten and each
    // consumer starts over from the stream's first event. Each stage must see that it is
    // done.
    let receiver = WebhookReceiver::start(&[]).await;
    let hook = receiver.url("/hook");
    let mut app = TestApp::spawn_on_cluster(NatsCluster::start().await, |config, _| {
        config.webhooks.allow_private = true;
        config.webhooks.endpoints = vec![huiying::config::EndpointConfig {
            name: "hook".into(),
            url: hook,
            secret: vec![Secret::new(WEBHOOK_SECRET)],
            secret_env: String::new(),
            events: vec!["image.completed".into()],
            headers: Default::default(),
            enabled: true,
        }];
    })
    .await;
    let before: Vec<String> =
        futures::future::join_all((0..10).map(|n| app.submit(json!({"prompt": format!("before {n}")})))).await;
    for id in &before {
        assert_eq!(app.wait_for_job(id).await["status"], "completed");
    }
    for consumer in CONSUMERS {
        app.wait_until_consumer_idle(consumer).await;
    }
    receiver.wait_for_hooks("/hook", 10).await;

    // The services stay away while every node stops (as in a power cut) and comes back.
    for service in CONSUMERS {
        app.stop_service(service).await;
    }
    for node in app.nats_nodes_mut() {
        node.kill();
    }
    futures::future::join_all(app.nats_nodes_mut().map(|node| node.restart())).await;
    let admin = jetstream::new(app.nats.clone());
    for consumer in CONSUMERS {
        let pending = wait_for(&format!("consumer {consumer} to be back"), Duration::from_secs(60), || async {
            let mut found: jetstream::consumer::PullConsumer =
                admin.get_stream(huiying::contract::STREAM).await.ok()?.get_consumer(consumer).await.ok()?;
            Some(found.info().await.ok()?.num_pending)
        })
        .await;
        assert!(pending >= 10, "{consumer} forgot its place: its events are pending again ({pending})");
    }
    for service in CONSUMERS {
        app.start_service(service);
    }
    let after = app.submit(json!({"prompt": "after"})).await;
    assert_eq!(app.wait_for_job(&after).await["status"], "completed");
    for consumer in CONSUMERS {
        app.wait_until_consumer_idle(consumer).await;
    }
    receiver.wait_for_hooks("/hook", 11).await;

    let jobs: Vec<&String> = before.iter().chain([&after]).collect();
    let records = app.records();
    let mails = app.smtp.mails();
    let hooks = receiver.hooks_at("/hook");
    for id in &jobs {
        assert_eq!(app.wait_for_job(id).await["status"], "completed", "job {id} stays completed");
        assert_eq!(records.iter().filter(|r| &&r["job_id"] == id).count(), 1, "job {id}: one record");
        assert_eq!(mails.iter().filter(|m| m.message_id.contains(id.as_str())).count(), 1, "job {id}: one mail");
        assert_eq!(hooks.iter().filter(|h| h.json()["data"]["id"] == id.as_str()).count(), 1, "job {id}: one webhook");
    }
    assert_eq!((records.len(), mails.len(), hooks.len()), (11, 11, 11), "nothing else was sent");
}

#[tokio::test(flavor = "multi_thread")]
async fn three_replicas_asked_of_a_single_copy_stream_stop_the_service_with_the_fix() {
    // An existing single-server deployment (streams with one copy) ...
    let app = TestApp::spawn().await;
    // ... and a store started with replicas = 3: it refuses, and changes nothing.
    let mut store = std::process::Command::new(env!("CARGO_BIN_EXE_huiying"))
        .arg("--config")
        .arg(app.config_file())
        .arg("store")
        .env_remove("HUIYING_CONFIG")
        .envs([("NATS_REPLICAS", "3"), ("NATS_USER", "store"), ("NATS_PASSWORD", &nats_password("store"))])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_for("the store to stop", Duration::from_secs(20), || {
        let status = store.try_wait().unwrap();
        async move { status }
    })
    .await;
    assert!(!status.success());
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut store.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(stderr.contains("stream HUIYING has 1 replica(s) but [nats] replicas = 3"), "{stderr}");
    assert!(stderr.contains("nats --user admin stream edit HUIYING --replicas 3"), "{stderr}");
    let js = jetstream::new(app.nats.clone());
    let info = js.get_stream("HUIYING").await.unwrap().info().await.unwrap().clone();
    assert_eq!(info.config.num_replicas, 1, "not silently changed");
}

/// Waits until `/health` says every service runs (its streams, buckets and consumers made).
pub(crate) async fn every_service_answers(app: &TestApp) {
    wait_for("every service to answer /health", Duration::from_secs(60), || async {
        let health: serde_json::Value =
            app.http.get(format!("{}/health", app.address)).send().await.ok()?.json().await.ok()?;
        (health["status"] == "ok").then_some(())
    })
    .await;
}

/// How many records each job has.
pub(crate) fn records_per_job(app: &TestApp) -> HashMap<String, usize> {
    let mut per_job = HashMap::new();
    for record in app.records() {
        *per_job.entry(record["job_id"].clone()).or_default() += 1;
    }
    per_job
}

/// How many mails each job was sent (its id is in the Message-ID, `<huiying.<kind>.<id>@...>`).
pub(crate) fn mails_per_job(app: &TestApp) -> HashMap<String, usize> {
    let mut per_job = HashMap::new();
    for mail in app.smtp.mails() {
        let job = mail.message_id.split('.').nth(2).unwrap_or_default().split('@').next().unwrap().to_string();
        *per_job.entry(job).or_default() += 1;
    }
    per_job
}

/// The job's state once final, or as it is after `patience`.
pub(crate) async fn last_state_within(app: &TestApp, id: &str, patience: Duration) -> serde_json::Value {
    let deadline = Instant::now() + patience;
    loop {
        // An ingest that stops answering fails the test at the deadline rather than hanging it.
        let state: serde_json::Value = match tokio::time::timeout(Duration::from_secs(10), app.get_job(id)).await {
            Ok(response) => response.json().await.unwrap_or_default(),
            Err(_) => serde_json::Value::Null,
        };
        if matches!(state["status"].as_str(), Some("completed" | "failed")) || Instant::now() > deadline {
            return state;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What the steady load got.
pub(crate) struct Submitted {
    pub accepted: Vec<String>,
    /// Requests answered otherwise than 202, or not within 30 s.
    pub refused: usize,
    pub longest_accept: Duration,
}

/// Submits `jobs` jobs at `per_second`, each asked once, as a client that does not retry:
/// ingest holds what NATS cannot take during the election ([server] failover_wait).
pub(crate) async fn submit_steadily(http: reqwest::Client, address: String, jobs: usize, per_second: f64) -> Submitted {
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / per_second));
    let mut clients = Vec::new();
    for n in 0..jobs {
        tick.tick().await;
        let (http, address) = (http.clone(), address.clone());
        clients.push(tokio::spawn(async move {
            let started = Instant::now();
            let answer = http
                .post(format!("{address}/generate-image"))
                .header("Prefer", "respond-async")
                .timeout(Duration::from_secs(30))
                .json(&json!({"prompt": format!("steady load {n}")}))
                .send()
                .await;
            match answer {
                Ok(response) if response.status() == 202 => {
                    let body: serde_json::Value = response.json().await.unwrap();
                    Some((body["id"].as_str().unwrap().to_string(), started.elapsed()))
                }
                Ok(response) => {
                    println!("job {n} refused: {} {}", response.status(), response.text().await.unwrap_or_default());
                    None
                }
                Err(error) => {
                    println!("job {n} unanswered: {error}");
                    None
                }
            }
        }));
    }
    let mut submitted = Submitted { accepted: Vec::new(), refused: 0, longest_accept: Duration::ZERO };
    for client in clients {
        match client.await.unwrap() {
            Some((id, took)) => {
                submitted.accepted.push(id);
                submitted.longest_accept = submitted.longest_accept.max(took);
            }
            None => submitted.refused += 1,
        }
    }
    submitted
}

/// The server leading the `HUIYING` stream, once the cluster has one.
pub(crate) async fn stream_leader(js: &jetstream::Context) -> String {
    wait_for("the event stream to have a leader", Duration::from_secs(30), || async {
        let mut stream = js.get_stream(huiying::contract::STREAM).await.ok()?;
        stream.info().await.ok()?.cluster.clone()?.leader
    })
    .await
}

/// The longest time between two successive completions, in seconds (RFC 3339 times).
fn longest_gap(times: &[String]) -> f64 {
    let parse = |t: &String| {
        time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).unwrap().unix_timestamp_nanos()
    };
    times.windows(2).map(|pair| (parse(&pair[1]) - parse(&pair[0])) as f64 / 1e9).fold(0.0, f64::max)
}

#[tokio::test(flavor = "multi_thread")]
async fn two_stores_on_one_postgresql_write_one_history_that_every_ingest_shows() {
    let s3 = S3Server::start().await;
    let public_domain = s3.serve_public_domain().await;
    let database = PostgresDatabase::create().await;
    let mut app = TestApp::spawn_with(|config, _| {
        s3.configure(config);
        config.cloudflare_r2.public_url = public_domain.clone();
        config.database.url = Secret::new(database.url.clone());
        config.smtp.attach_image = true;
    })
    .await;
    // Two stores and a mailer, each on a "host" of its own: a working folder nobody else
    // sees. They share only NATS, PostgreSQL and S3.
    app.stop_service("store").await;
    app.stop_service("mailer").await;
    let hosts: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::TempDir::new().unwrap()).collect();
    for host in &hosts[..2] {
        app.start_service_with("store", |config| config.server.images_dir = host.path().join("images"));
    }
    app.start_service_with("mailer", |config| config.server.images_dir = hosts[2].path().join("images"));
    let second_ingest = app.start_ingest().await;
    let ingests = [app.address.clone(), second_ingest];

    let subjects = ["海边的灯塔", "一只坐在月球上的猫", "a red fox in the snow", "City at night"];
    let mut submitted = Vec::new();
    for n in 0..200 {
        let response = app
            .http
            .post(format!("{}/generate-image", ingests[n % 2]))
            .header("Prefer", "respond-async")
            .json(&json!({"prompt": format!("{} {n}", subjects[n % 4])}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
        submitted.push(response.json::<serde_json::Value>().await.unwrap()["id"].as_str().unwrap().to_string());
    }
    for id in &submitted {
        assert_eq!(app.wait_for_job(id).await["status"], "completed");
    }

    // Both stores did part of the work, and their pictures are in S3.
    let stored: Vec<usize> = hosts[..2]
        .iter()
        .map(|h| {
            std::fs::read_dir(h.path().join("images"))
                .map_or(0, |d| d.filter(|e| e.as_ref().unwrap().path().is_file()).count())
        })
        .collect();
    assert!(stored.iter().all(|&n| n > 0) && stored.iter().sum::<usize>() == 200, "pictures per store: {stored:?}");
    // Either ingest answers the whole history, in the same order.
    let mut histories = Vec::new();
    for ingest in &ingests {
        let mut ids = Vec::new();
        for page in 1..=2 {
            let body = json_of(app.http.get(format!("{ingest}/records?limit=100&page={page}"))).await;
            assert_eq!(body["total"], 200, "{ingest}");
            for record in body["records"].as_array().unwrap() {
                assert!(record["url"].as_str().unwrap().starts_with(&public_domain), "an S3 link: {record}");
                ids.push(record["job_id"].as_str().unwrap().to_string());
            }
        }
        histories.push(ids);
    }
    assert_eq!(histories[0], histories[1]);
    let mut all = histories[0].clone();
    all.sort();
    submitted.sort();
    assert_eq!(all, submitted);
    // The mailer, with no picture on its host, attached each from S3.
    let mails = app.smtp.wait_for_mails(200).await;
    let attached = mails.iter().filter(|m| m.content_types.contains(&"image/jpeg".to_string())).count();
    assert_eq!(attached, 200, "every mail carries its picture");

    // Search and paging give what SQLite gives on the same records.
    let postgres = Records::open(&app.config.database).await.unwrap();
    let sqlite_dir = tempfile::TempDir::new().unwrap();
    let sqlite = Records::Sqlite(SqliteRecords::open(&sqlite_dir.path().join("same.db")).unwrap());
    let mut copied = Vec::new();
    for page in 1..=2 {
        copied.extend(postgres.query(&query(None, page, 100)).await.unwrap().records);
    }
    // Oldest first, so that both number the rows in the same order (ties in time go by row).
    for record in copied.iter().rev() {
        sqlite.insert(record).await.unwrap();
    }
    for (keyword, page, limit) in [
        (None, 3, 7),
        (Some("灯塔"), 1, 20),
        (Some("月球上的"), 2, 10),
        (Some("FOX"), 1, 100),
        (Some("night 1"), 1, 100),
        (Some("猫 19"), 1, 5),
    ] {
        let (expected, found) = (
            sqlite.query(&query(keyword, page, limit)).await.unwrap(),
            postgres.query(&query(keyword, page, limit)).await.unwrap(),
        );
        let ids = |page: &huiying::store::records::RecordPage| -> Vec<String> {
            page.records.iter().map(|r| r.job_id.clone()).collect()
        };
        assert_eq!((found.total, found.pages), (expected.total, expected.pages), "{keyword:?}");
        assert_eq!(ids(&found), ids(&expected), "{keyword:?} page {page}");
        assert!(found.total > 0, "{keyword:?} finds something");
    }

    // An ingest with no picture on its host answers one in the body (b64_json) from S3.
    let inline_request = json!({"prompt": "海边的灯塔 inline", "response_format": "b64_json"});
    let answer = json_of(app.http.post(format!("{}/generate-image", ingests[1])).json(&inline_request)).await;
    let inline = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        answer["data"][0]["b64_json"].as_str().unwrap_or_else(|| panic!("{answer}")),
    )
    .unwrap();
    let key = answer["data"][0]["url"].as_str().unwrap().trim_start_matches(&format!("{public_domain}/")).to_string();
    assert_eq!(inline, s3.object(&key).await.unwrap().0, "the stored picture, as S3 has it");
}

/// The JSON body of the answer to `request`.
async fn json_of(request: reqwest::RequestBuilder) -> serde_json::Value {
    request.send().await.unwrap().json().await.unwrap()
}

fn query(keyword: Option<&str>, page: u32, limit: u32) -> RecordQuery {
    RecordQuery { page, limit, keyword: keyword.map(String::from), ..Default::default() }
}
