//! The runtime's library API with native reactors: the same runner, gates,
//! atomic append and parking as wasm plugins, plus caller-defined gates and
//! lossy subscriptions.

use batpak_runtime::{
    self, parked_events, Descriptor, FailurePolicy, HostServices, ReactFailure, Reaction,
    ReactionCause, ReactionContext, ReactionVerdict, Reactor, RunState, RunnerSettings,
};
use batpak_store::{AppendOptions, Store};
use batpak_store::{CanalHandle, ReactorCanal, Region};
use batpak_store::{Coordinate, EventId, EventView, Proposal};
use batpak_store::{Denial, Gate, GateSet};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// A latch the test opens; a reactor holding it waits (bounded) until then.
type Latch = Arc<(Mutex<bool>, Condvar)>;
/// (payload, whether the dry run denied it), per event checked.
type DryRuns = Arc<Mutex<Vec<(Vec<u8>, bool)>>>;

struct Echo {
    d: Descriptor,
    host: Option<HostServices>,
    verdicts: Arc<Mutex<Vec<ReactionVerdict>>>,
    /// (payload, whether the dry run denied it): asserted on the test
    /// thread, because a panic in `react` is caught and parked.
    dry_runs: DryRuns,
    hold: Option<Latch>,
}

impl Echo {
    fn new(name: &str, canal: ReactorCanal) -> Echo {
        let mut d = Descriptor::new(name, "1.0.0");
        d.region = Region::all().kinds(["in"]);
        d.canal = canal;
        d.emits = vec!["out".into()];
        Echo {
            d,
            host: None,
            verdicts: Arc::default(),
            dry_runs: Arc::default(),
            hold: None,
        }
    }
}

impl Reactor for Echo {
    fn descriptor(&self) -> &Descriptor {
        &self.d
    }
    fn digest(&self) -> &str {
        "native-echo"
    }
    fn attach(&mut self, host: HostServices) {
        self.host = Some(host);
    }
    fn react(&mut self, batch: &[EventView]) -> Result<Vec<Reaction>, ReactFailure> {
        if let Some(l) = &self.hold {
            let (open, cv) = &**l;
            // Bounded: a test that forgets to open the latch fails on its
            // own assertions instead of hanging.
            let g = open.lock().unwrap();
            let _ = cv
                .wait_timeout_while(g, Duration::from_secs(60), |o| !*o)
                .unwrap();
        }
        let mut out = Vec::new();
        for (i, e) in batch.iter().enumerate() {
            match &*e.payload {
                b"poison" => return Err(ReactFailure::at(i as u32, "poison payload")),
                b"panic" => panic!("native reactor bug"),
                b"weird" => {
                    // Output that must be denied without taking the runner
                    // down: a megabyte of entity name, an unknown cause.
                    let big = "x".repeat(1 << 20);
                    out.push(Reaction::new(i as u32, &big, "t", "out", b"{}".to_vec()));
                    let mut r = Reaction::new(i as u32, "e", "t", "out", b"{}".to_vec());
                    r.causation = ReactionCause::Event(EventId(12345));
                    out.push(r);
                }
                _ => {
                    let c = e.coordinate();
                    let r = Reaction::new(i as u32, c.entity, c.scope, "out", e.payload.to_vec());
                    // The dry run agrees with what the append will decide.
                    let dry = self.host.as_ref().map(|h| h.check(&r, Some(e)));
                    self.dry_runs
                        .lock()
                        .unwrap()
                        .push((e.payload.to_vec(), matches!(dry, Some(Some(_)))));
                    out.push(r);
                }
            }
        }
        Ok(out)
    }
    fn verdicts(&mut self, verdicts: Vec<ReactionVerdict>) {
        self.verdicts.lock().unwrap().extend(verdicts);
    }
}

/// Records the reactor names it sees (asserted on the test thread: a panic
/// inside a gate would be contained by the runner).
#[derive(Default)]
struct NoDenyMe(Arc<Mutex<Vec<String>>>);

impl Gate<ReactionContext> for NoDenyMe {
    fn name(&self) -> &str {
        "no-deny-me"
    }
    fn evaluate(&self, ctx: &ReactionContext, p: &Proposal) -> Result<(), Denial> {
        self.0.lock().unwrap().push(ctx.reactor.name.clone());
        if p.payload == b"deny-me" {
            Err(Denial::new(
                "no-deny-me",
                "caller-says-no",
                "payloads saying deny-me are refused",
            ))
        } else {
            Ok(())
        }
    }
}

fn put(store: &Store, entity: &str, payload: &[u8]) {
    store
        .append(
            Proposal::new(
                Coordinate::new(entity, "t").unwrap(),
                "in",
                payload.to_vec(),
            ),
            AppendOptions::durable(),
        )
        .unwrap();
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    // A generous bound only to turn a hang into a failure.
    let until = Instant::now() + Duration::from_secs(60);
    while !f() {
        assert!(Instant::now() < until, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn native_reactor_goes_through_caller_gates_and_parking() {
    let dir = crate::common::tempdir();
    let store = Store::open(dir.path()).unwrap();
    for (i, p) in [&b"a"[..], b"deny-me", b"poison", b"b", b"weird", b"panic"]
        .iter()
        .enumerate()
    {
        put(&store, &format!("e:{i}"), p);
    }
    let echo = Echo::new("echo", ReactorCanal::CursorGuaranteed);
    let verdicts = echo.verdicts.clone();
    let dry_runs = echo.dry_runs.clone();
    let gate = NoDenyMe::default();
    let gate_saw = gate.0.clone();
    let settings = RunnerSettings {
        gates: Arc::new(GateSet::new().with(gate)),
        policy: FailurePolicy {
            attempts: 2,
            backoff: Duration::from_millis(1),
            ..FailurePolicy::default()
        },
        ..RunnerSettings::default()
    };
    let h = batpak_runtime::spawn(&store, Box::new(echo), settings).unwrap();
    let status = h.status().clone();
    wait_for("the runner to go idle", || {
        status.is_idle_at(store.watermarks().durable)
    });
    Box::new(h).stop_and_join().unwrap();
    assert_eq!(status.state(), RunState::Stopped);

    // The dry run agreed with the append for every event it was asked about,
    // and the caller's gate saw who proposed.
    let dry = dry_runs.lock().unwrap().clone();
    assert!(dry.iter().any(|(p, _)| p == b"deny-me"), "{dry:?}");
    for (payload, denied) in &dry {
        assert_eq!(*denied, payload == b"deny-me", "dry run for {payload:?}");
    }
    let saw = gate_saw.lock().unwrap().clone();
    assert!(
        !saw.is_empty() && saw.iter().all(|n| n == "echo"),
        "{saw:?}"
    );

    let out = store
        .scan(&Region::all().kinds(["out"]), 0, 100, false)
        .unwrap();
    let payloads: Vec<&[u8]> = out.iter().map(|e| &*e.payload).collect();
    assert_eq!(payloads, vec![&b"a"[..], b"b"]);
    for e in &out {
        let meta: Vec<(&str, &str)> = e
            .header
            .meta
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert!(
            meta.contains(&("reactor", "echo")) && meta.contains(&("component", "native-echo"))
        );
    }
    let denied = store
        .scan(&Region::all().kinds(["batpak.gate.denied"]), 0, 100, false)
        .unwrap();
    let codes: Vec<(String, String)> = denied
        .iter()
        .map(|d| {
            let rec: serde_json::Value = serde_json::from_slice(&d.payload).unwrap();
            (
                rec["gate"].as_str().unwrap().to_string(),
                rec["code"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let pair = |g: &str, c: &str| (g.to_string(), c.to_string());
    assert_eq!(
        codes,
        vec![
            pair("no-deny-me", "caller-says-no"),
            pair("capability", "invalid-proposal"),
            pair("capability", "unknown-causation"),
        ]
    );
    assert!(
        denied.iter().all(|d| d.payload.len() < 4096),
        "denial records stay small"
    );
    assert!(verdicts.lock().unwrap().iter().any(|v| v.denial.is_some()));

    let parked = parked_events(&store, Some("echo")).unwrap();
    assert_eq!(parked.len(), 2);
    assert_eq!(parked[0].record.entity, "e:2");
    assert_eq!(parked[0].record.failure, "error");
    assert_eq!(parked[0].record.cause, "poison payload");
    assert_eq!(
        parked[0].record.attempts, 1,
        "a react-error naming its event is not retried"
    );
    assert_eq!(parked[1].record.entity, "e:5");
    assert_eq!(parked[1].record.failure, "trap");
    assert!(parked[1].record.cause.contains("native reactor bug"));
    let cp = store.checkpoint("reactor.echo").unwrap();
    assert_eq!(
        cp.sequence,
        store
            .scan(&Region::all().kinds(["in"]), 0, 100, false)
            .unwrap()[5]
            .sequence()
    );
    store.close().unwrap();
}

#[test]
fn lossy_subscriber_that_falls_behind_is_resubscribed_and_counts_what_it_missed() {
    let dir = crate::common::tempdir();
    let store = Store::open(dir.path()).unwrap();
    let mut echo = Echo::new("lossy", ReactorCanal::LossySubscription);
    // The reactor is held in its first call until every event is appended,
    // so it falls behind whatever the speed of fsync.
    let latch: Latch = Arc::default();
    echo.hold = Some(latch.clone());
    let settings = RunnerSettings {
        subscription_capacity: 2,
        max_batch: 1,
        ..RunnerSettings::default()
    };
    let h = batpak_runtime::spawn(&store, Box::new(echo), settings).unwrap();
    let status = h.status().clone();
    wait_for("the runner to start", || {
        status.state() == RunState::Running
    });
    for i in 0..200 {
        put(&store, &format!("e:{i}"), b"x");
    }
    *latch.0.lock().unwrap() = true;
    latch.1.notify_all();
    wait_for("a cut-off to be noticed", || status.snapshot(0).missed > 0);
    // It keeps running after being cut off.
    put(&store, "late", b"x");
    wait_for("idle", || status.is_idle_at(store.watermarks().durable));
    assert_eq!(status.state(), RunState::Running);
    let s = status.snapshot(0);
    assert!(s.events_in + s.missed <= 201, "{s:?}");
    assert!(s.events_in > 0);
    Box::new(h).stop_and_join().unwrap();
    // No checkpoint for a lossy reactor.
    assert!(store.checkpoint("reactor.lossy").is_none());
    store.close().unwrap();
}

/// The durable window lets commits run ahead of their fsync, but a runner
/// that says it is idle has every reaction and its checkpoint durable.
#[test]
fn idle_runner_has_every_commit_of_its_durable_window_durable() {
    let dir = crate::common::tempdir();
    let store = Store::open(dir.path()).unwrap();
    let inputs: Vec<Proposal> = (0..40)
        .map(|i| {
            Proposal::new(
                Coordinate::new(format!("w:{i}"), "t").unwrap(),
                "in",
                format!("p{i}").into_bytes(),
            )
        })
        .collect();
    let receipts = store
        .append_batch(inputs, AppendOptions::durable())
        .unwrap();
    let last_input = receipts.last().unwrap().sequence;
    let settings = RunnerSettings {
        // Ten batches through a window of three.
        max_batch: 4,
        durable_window: 3,
        pull_wait: Duration::from_millis(20),
        ..RunnerSettings::default()
    };
    let h = batpak_runtime::spawn(
        &store,
        Box::new(Echo::new("window", ReactorCanal::CursorGuaranteed)),
        settings,
    )
    .unwrap();
    let status = h.status().clone();
    wait_for("the runner to go idle", || {
        status.is_idle_at(store.watermarks().durable)
    });
    // Checked before stopping (stopping syncs anyway).
    let durable = store.watermarks().durable;
    let out = store
        .scan(&Region::all().kinds(["out"]), 0, 100, false)
        .unwrap();
    assert_eq!(out.len(), 40);
    for e in &out {
        assert!(
            e.sequence() <= durable,
            "reaction at sequence {} reported while durable is {durable}",
            e.sequence()
        );
    }
    let cp = store
        .checkpoint(&batpak_runtime::cursor_id("window"))
        .expect("a checkpoint");
    assert_eq!(cp.sequence, last_input);
    let cp_record = store
        .scan(&Region::all(), 0, usize::MAX, true)
        .unwrap()
        .into_iter()
        .rfind(|e| e.kind() == "batpak.cursor.checkpoint")
        .expect("a checkpoint record");
    assert!(cp_record.sequence() <= durable);
    Box::new(h).stop_and_join().unwrap();
}
