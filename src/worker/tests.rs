//! The loop without NATS: deliveries from a channel, acknowledgements written down.

use std::sync::Mutex;

use futures::future::BoxFuture;
use tokio::sync::mpsc;

use super::*;
use crate::parts::memory::MemoryStream;

const POLICY: RetryPolicy =
    RetryPolicy { base: Duration::from_secs(10), cap: Duration::from_secs(60), jitter: 0.2, max_attempts: 3 };

type Acks = Arc<Mutex<Vec<(String, Ack)>>>;

/// A delivery whose acknowledgements land in `acks`, tagged with its payload.
struct TestDelivery {
    received: Received,
    acks: Acks,
}

impl Delivery for TestDelivery {
    fn received(&self) -> &Received {
        &self.received
    }

    async fn settle(&self, ack: Ack) -> Result<(), PartError> {
        let tag = String::from_utf8_lossy(&self.received.payload).into_owned();
        self.acks.lock().unwrap().push((tag, ack));
        Ok(())
    }
}

/// Hands out what the test sends, once; then waits for ever, as an idle consumer does.
struct TestSource(Mutex<Option<mpsc::UnboundedReceiver<TestDelivery>>>);

impl Source for TestSource {
    type Delivery = TestDelivery;

    async fn pull(&self, _batch: usize) -> Result<BoxStream<'static, Result<TestDelivery, PartError>>, PartError> {
        match self.0.lock().unwrap().take() {
            Some(mut receiver) => {
                Ok(futures::stream::poll_fn(move |context| receiver.poll_recv(context)).map(Ok).boxed())
            }
            None => Ok(futures::stream::pending().boxed()),
        }
    }
}

/// A stage made of a function, so each test says what the stage does.
#[derive(Clone)]
struct FnStage(Arc<dyn Fn(Received) -> BoxFuture<'static, Result<(), Failure>> + Send + Sync>);

impl Stage for FnStage {
    fn handle(&self, received: Received) -> impl Future<Output = Result<(), Failure>> + Send {
        (self.0)(received)
    }
}

/// What a test drives: send messages, stop, read the acknowledgements.
struct Harness {
    send: mpsc::UnboundedSender<TestDelivery>,
    acks: Acks,
    dead: Arc<MemoryStream>,
    shutdown: CancellationToken,
    loop_done: tokio::task::JoinHandle<()>,
}

fn settings(concurrency: usize) -> Settings {
    Settings {
        name: "test",
        concurrency,
        ack_wait: Duration::from_millis(300),
        shutdown_grace: Duration::from_millis(200),
        policy: POLICY,
    }
}

fn start(
    settings: Settings,
    stage: impl Fn(Received) -> BoxFuture<'static, Result<(), Failure>> + Send + Sync + 'static,
) -> Harness {
    let (send, receive) = mpsc::unbounded_channel();
    let dead = Arc::new(MemoryStream::default());
    let shutdown = CancellationToken::new();
    let source = TestSource(Mutex::new(Some(receive)));
    let loop_done = tokio::spawn(run(source, dead.clone(), settings, shutdown.clone(), FnStage(Arc::new(stage))));
    Harness { send, acks: Acks::default(), dead, shutdown, loop_done }
}

impl Harness {
    fn deliver(&self, payload: &str, attempt: u32) {
        let received = Received {
            subject: "image.requested".into(),
            payload: Bytes::copy_from_slice(payload.as_bytes()),
            attempt,
            stream: "HUIYING".into(),
            stream_sequence: 1,
            published: OffsetDateTime::now_utc(),
        };
        let _ = self.send.send(TestDelivery { received, acks: self.acks.clone() });
    }

    /// Waits until `payload` got an acknowledgement other than progress, and returns it.
    async fn final_ack(&self, payload: &str) -> Ack {
        for _ in 0..500 {
            let found = self
                .acks
                .lock()
                .unwrap()
                .iter()
                .find(|(tag, ack)| tag == payload && *ack != Ack::Progress)
                .map(|(_, ack)| *ack);
            if let Some(ack) = found {
                return ack;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{payload} was never acknowledged: {:?}", self.acks.lock().unwrap());
    }

    fn acks_of(&self, payload: &str) -> Vec<Ack> {
        self.acks.lock().unwrap().iter().filter(|(tag, _)| tag == payload).map(|(_, ack)| *ack).collect()
    }

    /// The acknowledgements of `payload` but progress acks.
    fn settled(&self, payload: &str) -> Vec<Ack> {
        self.acks_of(payload).into_iter().filter(|ack| *ack != Ack::Progress).collect()
    }

    async fn stop(self) -> Self {
        self.shutdown.cancel();
        let Harness { send, acks, dead, shutdown, loop_done } = self;
        tokio::time::timeout(Duration::from_secs(5), loop_done).await.expect("the loop stops").unwrap();
        Harness { send, acks, dead, shutdown, loop_done: tokio::spawn(async {}) }
    }
}

/// The stage's answer for each payload: `ok`, `busy` (transient), `busy-for-30s`
/// (transient, the source asked for 30 s), `poison` (permanent), `refused`.
fn by_payload(received: Received) -> BoxFuture<'static, Result<(), Failure>> {
    Box::pin(async move {
        match &received.payload[..] {
            b"ok" => Ok(()),
            b"busy" => Err(Failure::transient("the model is busy")),
            b"busy-for-30s" => Err(Failure::transient("rate limited").after(Some(Duration::from_secs(30)))),
            b"refused" => Err(Failure::refused("size is not supported")),
            _ => Err(Failure::permanent("not an image.requested event")),
        }
    })
}

#[test]
fn each_answer_maps_to_one_outcome() {
    assert_eq!(decide(Ok(()), 1, &POLICY), Outcome::Done);
    let Outcome::Retry(delay) = decide(Err(Failure::transient("busy")), 2, &POLICY) else { panic!("not a retry") };
    assert!(delay >= Duration::from_secs(16) && delay <= Duration::from_secs(24), "{delay:?}");
    let asked = decide(Err(Failure::transient("busy").after(Some(Duration::from_secs(90)))), 1, &POLICY);
    assert_eq!(asked, Outcome::Retry(Duration::from_secs(90)), "the source's wait beats the policy's");
    assert_eq!(decide(Err(Failure::permanent("poison")), 1, &POLICY), Outcome::Reject("poison".into()));
    assert_eq!(decide(Err(Failure::refused("no such option")), 1, &POLICY), Outcome::Reject("no such option".into()));
}

#[tokio::test(start_paused = true)]
async fn done_is_acked_transient_is_nakked_with_a_delay_and_poison_is_dead_lettered_then_terminated() {
    let harness = start(settings(4), by_payload);
    for payload in ["ok", "busy", "busy-for-30s", "poison", "refused"] {
        harness.deliver(payload, 1);
    }
    assert_eq!(harness.final_ack("ok").await, Ack::Done);
    let Ack::Nak(Some(delay)) = harness.final_ack("busy").await else { panic!("busy was not nakked with a delay") };
    assert!(delay >= Duration::from_secs(8) && delay <= Duration::from_secs(12), "{delay:?}");
    assert_eq!(harness.final_ack("busy-for-30s").await, Ack::Nak(Some(Duration::from_secs(30))));
    assert_eq!(harness.final_ack("poison").await, Ack::Term);
    assert_eq!(harness.final_ack("refused").await, Ack::Term);
    let dead = harness.dead.dead_letters();
    assert!(dead.contains(&("image.requested".into(), "not an image.requested event".into())), "{dead:?}");
    assert!(dead.contains(&("image.requested".into(), "size is not supported".into())), "{dead:?}");
    assert_eq!(dead.len(), 2, "only rejected messages become dead letters");
    harness.stop().await;
}

#[tokio::test(start_paused = true)]
async fn poison_whose_dead_letter_cannot_be_kept_is_redelivered_not_terminated() {
    let harness = start(settings(1), by_payload);
    harness.dead.set_down(true);
    harness.deliver("poison", 1);
    assert_eq!(harness.final_ack("poison").await, Ack::Nak(Some(Duration::from_secs(5))));
    assert!(!harness.acks_of("poison").contains(&Ack::Term));
    harness.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_slow_stage_sends_progress_acks_until_it_is_done() {
    let harness = start(settings(1), |_| {
        Box::pin(async {
            tokio::time::sleep(Duration::from_millis(450)).await;
            Ok(())
        })
    });
    harness.deliver("slow", 1);
    assert_eq!(harness.final_ack("slow").await, Ack::Done);
    let progress = harness.acks_of("slow").iter().filter(|ack| **ack == Ack::Progress).count();
    assert!(progress >= 2, "progress acks every ack_wait / 3 (100 ms): {progress}");
    harness.stop().await;
}

#[tokio::test(start_paused = true)]
async fn at_shutdown_work_past_the_grace_and_buffered_messages_are_handed_back_at_once() {
    let (started, mut has_started) = mpsc::unbounded_channel();
    let harness = start(settings(1), move |received| {
        let started = started.clone();
        Box::pin(async move {
            let _ = started.send(received.payload.clone());
            futures::future::pending::<()>().await;
            Ok(())
        })
    });
    harness.deliver("endless", 1);
    harness.deliver("waiting", 1);
    // The one slot is taken by the endless message; the second waits in the buffer.
    assert_eq!(has_started.recv().await.unwrap(), "endless");
    let harness = harness.stop().await;
    assert_eq!(harness.settled("waiting"), [Ack::Nak(None)], "buffered, never started: handed back");
    assert_eq!(harness.settled("endless"), [Ack::Nak(None)], "still running after the grace: handed back");
    assert!(has_started.try_recv().is_err(), "the buffered message was never started");
}

#[tokio::test(start_paused = true)]
async fn a_stage_that_finishes_within_the_grace_is_acked_after_shutdown() {
    let (started, mut has_started) = mpsc::unbounded_channel();
    let harness = start(settings(1), move |_| {
        let started = started.clone();
        Box::pin(async move {
            let _ = started.send(());
            tokio::time::sleep(Duration::from_millis(100)).await;
            Ok(())
        })
    });
    harness.deliver("finishing", 1);
    has_started.recv().await.unwrap();
    let harness = harness.stop().await;
    assert_eq!(harness.settled("finishing"), [Ack::Done]);
}
