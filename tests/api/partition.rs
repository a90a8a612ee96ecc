//! A network partition: three NATS nodes on hosts of their own (network namespaces), the
//! one leading the job stream cut off from the others and from the services for 30 s
//! while jobs arrive.

use std::time::{Duration, Instant};

use async_nats::jetstream;

use crate::cluster::{
    every_service_answers, last_state_within, mails_per_job, records_per_job, stream_leader, submit_steadily,
};
use crate::helpers::{Hosts, NatsCluster, TestApp, wait_for};

const JOBS: usize = 500;
const PER_SECOND: f64 = 10.0;
const CUT_AFTER: Duration = Duration::from_secs(5);
const CUT_FOR: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread")]
async fn a_node_cut_off_for_30_s_under_load_loses_nothing_doubles_nothing_and_catches_up() {
    // Opt-in: it changes the machine's network (as root), and under CI's parallel load one
    // run of six saw the in-process ingest stop accepting connections after the partition,
    // not yet explained (docs/operations.md).
    if std::env::var_os("HUIYING_NETNS_TESTS").is_none() {
        println!("skipped: HUIYING_NETNS_TESTS=1 runs it (as root, with iproute2)");
        return;
    }
    let Some(hosts) = Hosts::create(3) else {
        println!("skipped: making network namespaces needs root and iproute2 (ip netns)");
        return;
    };
    let mut app = TestApp::spawn_on_cluster(NatsCluster::start_on(&hosts).await, |config, _| {
        config.nats.ack_wait = Duration::from_secs(5)
    })
    .await;
    every_service_answers(&app).await;
    let js = jetstream::new(app.nats.clone());

    let started = Instant::now();
    let load = tokio::spawn(submit_steadily(app.http.clone(), app.address.clone(), JOBS, PER_SECOND));
    // Five seconds into the load, the host of the node leading the job stream drops off
    // the network: no process dies, nothing is closed, its packets simply go nowhere.
    tokio::time::sleep(CUT_AFTER).await;
    let leader = stream_leader(&js).await;
    let cut = app.nats_nodes_mut().position(|node| node.name == leader).expect("the leader is one of ours");
    hosts.cut(cut);
    tokio::time::sleep(CUT_FOR).await;
    hosts.mend(cut);
    let submitted = load.await.unwrap();

    for id in &submitted.accepted {
        let job = last_state_within(&app, id, Duration::from_secs(90)).await;
        assert_eq!(job["status"], "completed", "{job}");
    }
    app.wait_until_consumer_idle("mailer").await;
    // Back on the network, the node catches up: every replica of the stream and of the
    // buckets current, none lagging.
    for stream in ["HUIYING", "KV_huiying_jobs", "KV_huiying_mail"] {
        wait_for(&format!("{leader} to catch up on {stream}"), Duration::from_secs(60), || async {
            let mut stream = js.get_stream(stream).await.ok()?;
            let cluster = stream.info().await.ok()?.cluster.clone()?;
            let replica = cluster.replicas.iter().find(|r| r.name == leader);
            let caught_up = cluster.leader.as_deref() == Some(leader.as_str())
                || replica.is_some_and(|r| r.current && !r.offline && r.lag.unwrap_or(0) == 0);
            caught_up.then_some(())
        })
        .await;
    }

    let (records_per_job, mails_per_job) = (records_per_job(&app), mails_per_job(&app));
    println!(
        "partition: {JOBS} jobs at {PER_SECOND}/s; {leader} cut off {} s in for {} s; accepted {}, refused {}; \
         records {}, mails {}; longest accept {:.2} s; all done in {:.1} s",
        CUT_AFTER.as_secs(),
        CUT_FOR.as_secs(),
        submitted.accepted.len(),
        submitted.refused,
        records_per_job.values().sum::<usize>(),
        mails_per_job.values().sum::<usize>(),
        submitted.longest_accept.as_secs_f64(),
        started.elapsed().as_secs_f64(),
    );
    assert_eq!(submitted.refused, 0, "every request answered 202 at the first try");
    for id in &submitted.accepted {
        assert_eq!(records_per_job.get(id), Some(&1), "job {id}: one record");
        assert_eq!(mails_per_job.get(id), Some(&1), "job {id}: one mail");
    }
    assert_eq!(records_per_job.len(), JOBS, "no record of a job nobody asked for");
    assert_eq!(mails_per_job.len(), JOBS, "no mail of a job nobody asked for");
}
