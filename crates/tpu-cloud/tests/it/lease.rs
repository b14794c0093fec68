//! Never leak a VM: `with_node` deletes on success, error, stockout,
//! deadline and cancellation; a run killed outright is cleaned up from its
//! state file; a create whose answer was lost is adopted, not duplicated.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tpu_cloud::api::{NetworkConfig, Provisioning};
use tpu_cloud::lease::{self, CleanupOutcome, Deadlines, Failure, NodeRequest};
use tpu_cloud::state::{Ledger, Phase, STATE_FILE};
use tpu_cloud::{Error, Location, TpuClient};

use crate::support::{VirtualClock, client, client_with, timing};
use tpu_cloud::fake::{FakeTpu, PROJECT, ZONE};

fn request(queued: bool) -> NodeRequest {
    NodeRequest {
        location: Location::new(PROJECT, ZONE),
        node_id: "sglprof-20260205-184819".to_owned(),
        run_id: "20260205T184819Z_generate_tinyllama".to_owned(),
        accelerator_type: "v6e-1".to_owned(),
        runtime_version: "v6e-ubuntu-2404".to_owned(),
        provisioning: Provisioning::Spot,
        queued,
        queued_valid_for: Some(Duration::from_secs(3600)),
        labels: BTreeMap::new(),
        metadata: BTreeMap::new(),
        network: NetworkConfig {
            enable_external_ips: true,
            ..NetworkConfig::default()
        },
        service_account: None,
        deadlines: Deadlines {
            create: Duration::from_secs(600),
            ready: Duration::from_secs(600),
            delete: Duration::from_secs(600),
        },
    }
}

fn node_name() -> String {
    FakeTpu::node_name("sglprof-20260205-184819")
}

fn ledger(dir: &Path, req: &NodeRequest) -> Ledger {
    Ledger::create(&dir.join(STATE_FILE), req.planned_state()).unwrap()
}

fn never() -> std::future::Pending<()> {
    std::future::pending()
}

#[tokio::test]
async fn success_deletes_and_bills_create_to_delete() {
    let fake = FakeTpu::start().await;
    let dir = tempfile::tempdir().unwrap();
    let clock = VirtualClock::new();
    let (client, _) = client(&fake.url(), clock.clone());
    let req = request(false);
    let mut ledger = ledger(dir.path(), &req);
    let fake_ref = &fake;
    let leased = lease::with_node(
        &client,
        &req,
        &mut ledger,
        false,
        never(),
        |node| async move {
            assert_eq!(node.internal_ip(), Some("10.0.0.2"));
            let labels = &fake_ref.world().nodes[&node_name()]["labels"];
            assert_eq!(labels["created-by"], "sglprof");
            assert_eq!(labels["sglprof-run"], "20260205t184819z_generate_tinyllama");
            Ok::<_, String>(42)
        },
    )
    .await;
    assert_eq!(leased.outcome.unwrap(), 42);
    leased.release.unwrap().unwrap();
    assert_eq!(leased.state_note, None);
    assert_eq!(fake.world().deleted, [node_name()]);

    let saved = Ledger::open(&dir.path().join(STATE_FILE)).unwrap();
    assert_eq!(saved.state.phase, Phase::Deleted);
    assert_eq!(
        saved.state.create_requested_at.as_deref(),
        Some("2026-02-05T18:48:19Z")
    );
    let billed = saved.state.billed(clock_now(&client)).unwrap();
    // Whole seconds: the state file keeps RFC 3339 times to the second.
    assert_eq!(billed.as_secs(), clock_elapsed(&clock).unwrap().as_secs());
    assert!(billed >= Duration::from_secs(5), "{billed:?}");
}

fn clock_now(client: &TpuClient) -> std::time::SystemTime {
    client.clock().now()
}

fn clock_elapsed(clock: &VirtualClock) -> Option<Duration> {
    Some(clock.sleeps().iter().sum())
}

#[tokio::test]
async fn the_state_file_exists_before_the_create_call() {
    let fake = FakeTpu::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (client, _) = client(&fake.url(), VirtualClock::new());
    let req = request(false);
    // An injected failure on the create call: by then the file must say
    // `creating` already, with the node name in it.
    fake.inject(
        "POST",
        "/nodes",
        403,
        tpu_cloud::fake::google_error(403, "PERMISSION_DENIED", "denied"),
        1,
    );
    let mut ledger = ledger(dir.path(), &req);
    let err = lease::acquire(&client, &req, &mut ledger)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::PermissionDenied { .. }));
    let saved = Ledger::open(&dir.path().join(STATE_FILE)).unwrap();
    assert_eq!(saved.state.phase, Phase::Creating);
    assert_eq!(saved.state.node_id, "sglprof-20260205-184819");
}

#[tokio::test]
async fn session_error_still_deletes() {
    let fake = FakeTpu::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (client, _) = client(&fake.url(), VirtualClock::new());
    let req = request(false);
    let mut ledger = ledger(dir.path(), &req);
    let leased = lease::with_node(&client, &req, &mut ledger, false, never(), |_| async {
        Err::<(), _>("the server never became ready")
    })
    .await;
    assert!(matches!(
        leased.outcome,
        Err(Failure::Session("the server never became ready"))
    ));
    leased.release.unwrap().unwrap();
    assert_eq!(fake.world().deleted, [node_name()]);
}

#[tokio::test]
async fn stockout_and_deadline_leave_nothing_behind() {
    for fault in ["stockout", "never-finishes"] {
        let fake = FakeTpu::start().await;
        let dir = tempfile::tempdir().unwrap();
        let (client, _) = client(&fake.url(), VirtualClock::new());
        let req = request(false);
        match fault {
            "stockout" => fake.world().stockout = true,
            _ => fake.world().create_op_polls = u32::MAX,
        }
        let mut ledger = ledger(dir.path(), &req);
        let leased = lease::with_node(&client, &req, &mut ledger, false, never(), |_| async {
            Ok::<_, String>(())
        })
        .await;
        let Err(Failure::Provision(err)) = leased.outcome else {
            panic!("{fault}: expected a provisioning failure")
        };
        match fault {
            "stockout" => assert!(matches!(err, Error::NoCapacity { .. }), "{err}"),
            _ => assert!(matches!(err, Error::Deadline { .. }), "{err}"),
        }
        leased.release.unwrap().unwrap();
        assert!(
            fake.world().nodes.is_empty(),
            "{fault}: a node was left behind"
        );
        assert_eq!(
            Ledger::open(&dir.path().join(STATE_FILE))
                .unwrap()
                .state
                .phase,
            Phase::Deleted
        );
    }
}

/// Ctrl-C while the create operation is still running: the cancel future
/// fires, the session is dropped, and the node is deleted.
#[tokio::test]
async fn cancel_mid_create_deletes_the_node() {
    let fake = Arc::new(FakeTpu::start().await);
    let dir = tempfile::tempdir().unwrap();
    let (client, _) = client(&fake.url(), VirtualClock::new());
    fake.world().create_op_polls = u32::MAX;
    let req = request(false);
    let mut ledger = ledger(dir.path(), &req);
    let watcher = fake.clone();
    let cancel = async move {
        // "Ctrl-C" once the create operation has been polled a few times.
        // Checked on every wake-up of the session, long before the create
        // deadline (about 20 polls of virtual time) could end it.
        while watcher.requests("GET /v2/projects/test-project/locations/us-east5-b/operations/") < 3
        {
            tokio::task::yield_now().await;
        }
    };
    let leased = lease::with_node(&client, &req, &mut ledger, false, cancel, |_| async {
        unreachable!("the node never becomes ready");
        #[allow(unreachable_code)]
        Ok::<(), String>(())
    })
    .await;
    assert!(matches!(leased.outcome, Err(Failure::Cancelled)));
    leased.release.unwrap().unwrap();
    assert_eq!(fake.world().deleted, [node_name()]);
    assert!(fake.world().log.iter().any(|l| l.starts_with("DELETE ")));
    assert_eq!(
        Ledger::open(&dir.path().join(STATE_FILE))
            .unwrap()
            .state
            .phase,
        Phase::Deleted
    );
}

/// Ctrl-C in the middle of the session (the node is READY).
#[tokio::test]
async fn cancel_mid_session_deletes_the_node() {
    let fake = FakeTpu::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (client, _) = client(&fake.url(), VirtualClock::new());
    let req = request(false);
    let mut ledger = ledger(dir.path(), &req);
    let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
    let cancel = async move {
        started_rx.await.unwrap();
    };
    let leased = lease::with_node(&client, &req, &mut ledger, false, cancel, |_| async move {
        started_tx.send(()).unwrap();
        std::future::pending::<Result<(), String>>().await
    })
    .await;
    assert!(matches!(leased.outcome, Err(Failure::Cancelled)));
    leased.release.unwrap().unwrap();
    assert_eq!(fake.world().deleted, [node_name()]);
}

/// A run killed outright (the task is aborted: no destructor, no delete)
/// leaves a READY node and a state file; `cleanup` deletes the node.
#[tokio::test]
async fn killed_run_is_cleaned_up_from_its_state_file() {
    let fake = Arc::new(FakeTpu::start().await);
    let dir = tempfile::tempdir().unwrap();
    let (client, _) = client(&fake.url(), VirtualClock::new());
    let req = request(false);
    let path = dir.path().join(STATE_FILE);
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<()>();
    let task = {
        let (client, req, path) = (client.clone(), req.clone(), path.clone());
        tokio::spawn(async move {
            let mut ledger = Ledger::create(&path, req.planned_state()).unwrap();
            let _ = lease::with_node(&client, &req, &mut ledger, false, never(), |_| async move {
                ready_tx.send(()).unwrap();
                std::future::pending::<Result<(), String>>().await
            })
            .await;
        })
    };
    ready_rx.await.unwrap();
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    assert!(
        fake.world().nodes.contains_key(&node_name()),
        "the kill left the node running"
    );
    assert!(fake.world().deleted.is_empty());

    let mut ledger = Ledger::open(&path).unwrap();
    assert_eq!(ledger.state.phase, Phase::Ready);
    let outcome = lease::cleanup(&client, &mut ledger, Duration::from_secs(600))
        .await
        .unwrap();
    assert_eq!(outcome, CleanupOutcome::Deleted);
    assert_eq!(fake.world().deleted, [node_name()]);
    let saved = Ledger::open(&path).unwrap();
    assert_eq!(saved.state.phase, Phase::Deleted);
    assert!(saved.state.deleted_at.is_some());
    // A second cleanup has nothing to do and sends nothing.
    let before = fake.requests("");
    let mut ledger = Ledger::open(&path).unwrap();
    let outcome = lease::cleanup(&client, &mut ledger, Duration::from_secs(600))
        .await
        .unwrap();
    assert_eq!(outcome, CleanupOutcome::NothingToDo(Phase::Deleted));
    assert_eq!(fake.requests(""), before);
}

/// Killed while the create call was in flight: the state file says
/// `creating`; cleanup deletes the node the create made after all.
#[tokio::test]
async fn killed_during_create_is_cleaned_up() {
    let fake = Arc::new(FakeTpu::start().await);
    let dir = tempfile::tempdir().unwrap();
    let (client, _) = client(&fake.url(), VirtualClock::new());
    fake.world().create_op_polls = u32::MAX;
    let req = request(false);
    let path = dir.path().join(STATE_FILE);
    let task = {
        let (client, req, path) = (client.clone(), req.clone(), path.clone());
        tokio::spawn(async move {
            let mut ledger = Ledger::create(&path, req.planned_state()).unwrap();
            let _ = lease::acquire(&client, &req, &mut ledger).await;
        })
    };
    while fake.requests("GET") < 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    task.abort();
    let _ = task.await;
    let mut ledger = Ledger::open(&path).unwrap();
    assert_eq!(ledger.state.phase, Phase::Creating);
    lease::cleanup(&client, &mut ledger, Duration::from_secs(600))
        .await
        .unwrap();
    assert_eq!(fake.world().deleted, [node_name()]);
}

#[tokio::test]
async fn keep_leaves_the_node_and_cleanup_ends_it() {
    let fake = FakeTpu::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (client, _) = client(&fake.url(), VirtualClock::new());
    let req = request(false);
    let mut ledger = ledger(dir.path(), &req);
    let leased = lease::with_node(&client, &req, &mut ledger, true, never(), |_| async {
        Ok::<_, String>(())
    })
    .await;
    leased.outcome.unwrap();
    assert!(leased.release.is_none());
    assert!(fake.world().deleted.is_empty());
    let mut ledger = Ledger::open(&dir.path().join(STATE_FILE)).unwrap();
    assert_eq!(ledger.state.phase, Phase::Kept);
    lease::cleanup(&client, &mut ledger, Duration::from_secs(600))
        .await
        .unwrap();
    assert_eq!(fake.world().deleted, [node_name()]);
}

/// The create call times out on our side but went through on Google's:
/// the node (labelled with our run) is adopted, not created twice, and
/// still deleted at the end.
#[tokio::test]
async fn create_that_succeeds_after_the_client_timed_out_is_adopted() {
    let fake = FakeTpu::start().await;
    fake.world().create_delay = Some(Duration::from_millis(800));
    let mut timing = timing();
    timing.request_timeout = Duration::from_millis(200);
    let dir = tempfile::tempdir().unwrap();
    let (client, _) = client_with(&fake.url(), VirtualClock::new(), timing);
    let req = request(false);
    let mut ledger = ledger(dir.path(), &req);
    let leased = lease::with_node(
        &client,
        &req,
        &mut ledger,
        false,
        never(),
        |node| async move { Ok::<_, String>(node.id().to_owned()) },
    )
    .await;
    assert_eq!(leased.outcome.unwrap(), "sglprof-20260205-184819");
    leased.release.unwrap().unwrap();
    assert_eq!(fake.requests("POST"), 1, "no second create");
    assert_eq!(fake.world().deleted, [node_name()]);
}

/// A name taken by someone else's node is not adopted.
#[tokio::test]
async fn a_foreign_node_of_the_same_name_is_not_adopted_or_deleted() {
    let fake = FakeTpu::start().await;
    fake.add_node(
        "sglprof-20260205-184819",
        serde_json::json!({"team": "other"}),
    );
    let dir = tempfile::tempdir().unwrap();
    let (client, _) = client(&fake.url(), VirtualClock::new());
    let req = request(false);
    let mut ledger = ledger(dir.path(), &req);
    let err = lease::acquire(&client, &req, &mut ledger)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::AlreadyExists { .. }), "{err}");
    // The ledger knows the name was never ours to delete.
    assert!(fake.world().deleted.is_empty());
}

#[tokio::test]
async fn spot_through_a_queued_resource() {
    let fake = FakeTpu::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (client, _) = client(&fake.url(), VirtualClock::new());
    let req = request(true);
    let mut ledger = ledger(dir.path(), &req);
    assert_eq!(
        ledger.state.queued_resource.as_deref(),
        Some("sglprof-20260205-184819")
    );
    let leased = lease::with_node(
        &client,
        &req,
        &mut ledger,
        false,
        never(),
        |node| async move { Ok::<_, String>(node.queued_resource.clone()) },
    )
    .await;
    assert!(
        leased
            .outcome
            .unwrap()
            .unwrap()
            .ends_with("/queuedResources/sglprof-20260205-184819")
    );
    leased.release.unwrap().unwrap();
    let world = fake.world();
    assert!(world.nodes.is_empty() && world.queued.is_empty());
    assert!(
        world
            .log
            .iter()
            .any(|l| l.contains("queuedResources/sglprof-20260205-184819?force=true"))
    );
}

/// A session that panics: the node is deleted before the panic goes on.
#[tokio::test]
async fn a_panicking_session_still_deletes_the_node() {
    use futures_util::FutureExt as _;
    let fake = FakeTpu::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (client, _) = client(&fake.url(), VirtualClock::new());
    let req = request(false);
    let mut ledger = ledger(dir.path(), &req);
    let res = std::panic::AssertUnwindSafe(lease::with_node(
        &client,
        &req,
        &mut ledger,
        false,
        never(),
        |_| async move {
            if true {
                panic!("a bug in the session");
            }
            Ok::<(), String>(())
        },
    ))
    .catch_unwind()
    .await;
    let payload = res.err().expect("the panic goes on");
    assert_eq!(
        payload.downcast_ref::<&str>(),
        Some(&"a bug in the session")
    );
    assert_eq!(fake.world().deleted, [node_name()]);
    assert!(fake.world().nodes.is_empty());
    assert_eq!(ledger.state.phase, Phase::Deleted);
    let on_disk = Ledger::open(&dir.path().join(STATE_FILE)).unwrap();
    assert_eq!(on_disk.state.phase, Phase::Deleted);
}

/// A full disk after the node is READY: the state file cannot be written,
/// and the DELETE still goes out (issue 13, item 5).
#[tokio::test]
async fn a_state_file_that_cannot_be_written_does_not_stop_the_delete() {
    let fake = FakeTpu::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (client, _) = client(&fake.url(), VirtualClock::new());
    let req = request(false);
    let fault = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut ledger = ledger(dir.path(), &req).with_write_fault(fault.clone());
    let leased = lease::with_node(&client, &req, &mut ledger, false, never(), |_| {
        let fault = fault.clone();
        async move {
            fault.store(true, std::sync::atomic::Ordering::SeqCst);
            Ok::<_, String>(())
        }
    })
    .await;
    leased.outcome.unwrap();
    leased.release.unwrap().unwrap();
    assert_eq!(fake.world().deleted, [node_name()]);
    assert!(
        fake.world()
            .log
            .iter()
            .any(|l| l.starts_with("DELETE /v2/projects/test-project/locations/us-east5-b/nodes/"))
    );
    // The caller learns that the file is behind, and the file still says
    // the node may be alive, so a later cleanup looks again.
    let unsaved = ledger.unsaved().expect("the failed save is reported");
    assert!(unsaved.contains("No space left on device"), "{unsaved}");
    // ... in a clause the driver puts in its closing line.
    let path = dir.path().join(STATE_FILE);
    assert_eq!(
        leased.state_note.as_deref(),
        Some(
            format!(
                "the run state file {} could not be saved (writing `{}`: No space left on device (os error 28)): \
                 it still says `ready`, not `deleted`",
                path.display(),
                path.display()
            )
            .as_str()
        )
    );
    let on_disk = Ledger::open(&dir.path().join(STATE_FILE)).unwrap();
    assert_eq!(on_disk.state.phase, Phase::Ready);
    // Cleanup with a writable disk finds nothing alive and says so.
    let mut on_disk = on_disk;
    lease::cleanup(&client, &mut on_disk, Duration::from_secs(600))
        .await
        .unwrap();
    assert_eq!(on_disk.state.phase, Phase::Deleted);
}

/// Cancelled while the create call is in flight, and the node only shows
/// up later: the release learns the create's operation and keeps looking
/// until it is done, then deletes the node (issue 13, item 6).
#[tokio::test]
async fn cancelled_in_flight_create_is_found_and_deleted_when_it_lands() {
    let fake = FakeTpu::start().await;
    {
        let mut world = fake.world();
        world.create_delay = Some(Duration::from_millis(400));
        world.create_hidden_for = 6;
        world.create_op_polls = 8;
    }
    let dir = tempfile::tempdir().unwrap();
    let (client, _) = client(&fake.url(), VirtualClock::new());
    let req = request(false);
    let mut ledger = ledger(dir.path(), &req);
    let cancel = tokio::time::sleep(Duration::from_millis(100));
    let leased = lease::with_node(&client, &req, &mut ledger, false, cancel, |_| async {
        Ok::<_, String>(())
    })
    .await;
    assert!(matches!(leased.outcome, Err(Failure::Cancelled)));
    leased.release.unwrap().unwrap();
    assert_eq!(fake.world().deleted, [node_name()]);
    assert!(fake.world().nodes.is_empty(), "the node was left behind");
    let saved = Ledger::open(&dir.path().join(STATE_FILE)).unwrap();
    assert_eq!(saved.state.phase, Phase::Deleted);
    assert!(saved.state.create_operation.is_some());
}

/// A retried create answered 409 (the first attempt went through) whose
/// lookup then fails: the node is still ours, and deleted at the end.
#[tokio::test]
async fn conflict_then_failed_lookup_does_not_disown_the_node() {
    let fake = FakeTpu::start().await;
    fake.world().create_delay = Some(Duration::from_millis(800));
    let path = "/nodes/sglprof-20260205-184819";
    // The first look after the lost answer: not there yet.
    fake.inject(
        "GET",
        path,
        404,
        tpu_cloud::fake::google_error(404, "NOT_FOUND", "not found"),
        1,
    );
    // Every look after the 409 fails (4 attempts per call, 3 calls).
    fake.inject(
        "GET",
        path,
        503,
        tpu_cloud::fake::google_error(503, "UNAVAILABLE", "try again"),
        12,
    );
    let mut timing = timing();
    timing.request_timeout = Duration::from_millis(200);
    let dir = tempfile::tempdir().unwrap();
    let (client, _) = client_with(&fake.url(), VirtualClock::new(), timing);
    let req = request(false);
    let mut ledger = ledger(dir.path(), &req);
    let leased = lease::with_node(&client, &req, &mut ledger, false, never(), |_| async {
        Ok::<_, String>(())
    })
    .await;
    let Err(Failure::Provision(err)) = &leased.outcome else {
        panic!("expected a provisioning failure");
    };
    assert!(err.to_string().contains("could not be read"), "{err}");
    assert_eq!(fake.requests("POST"), 2);
    leased.release.unwrap().unwrap();
    assert_eq!(fake.world().deleted, [node_name()]);
    let saved = Ledger::open(&dir.path().join(STATE_FILE)).unwrap();
    assert!(saved.state.owned);
    assert_eq!(saved.state.phase, Phase::Deleted);
}

/// HUP and QUIT end a session like INT and TERM do (issue 13, item 4).
#[tokio::test]
async fn every_terminating_signal_is_caught() {
    let mut signals = lease::Signals::install().unwrap();
    for (signal, name) in [
        (libc::SIGHUP, "SIGHUP"),
        (libc::SIGQUIT, "SIGQUIT"),
        (libc::SIGTERM, "SIGTERM"),
        (libc::SIGINT, "SIGINT"),
    ] {
        // SAFETY: raising a signal whose handler was installed above.
        unsafe {
            libc::raise(signal);
        }
        let got = tokio::time::timeout(Duration::from_secs(5), signals.recv())
            .await
            .expect("the signal arrives");
        assert_eq!(got, name);
    }
}
