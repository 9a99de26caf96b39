//! The README's first command, `batpak-host demo`, end to end: the three
//! Rust reactors and the hand-written WAT one run over the sample orders,
//! and the causal trees and counts it prints match what the log holds.

use crate::common::*;

#[test]
fn demo_runs_the_polyglot_system_and_reports_what_the_log_holds() {
    let plugins = plugins_dir();
    let dir = tempdir();
    let store = dir.path().join("demo-store");
    let out = host_ok(
        dir.path(),
        &[
            "demo",
            "--dir",
            store.to_str().unwrap(),
            "--plugins-dir",
            plugins.to_str().unwrap(),
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("5 reserved, 2 rejected, 2 customers notified (WAT reactor), 5 shipments, 4 low-stock alerts, 2 denied by a gate, 0 parked"),
        "{text}"
    );
    // The counts are the log's, not the printer's.
    assert_eq!(events_of(&store, "customer.notified").len(), 2);
    let rejected = events_of(&store, "inventory.rejected");
    for n in events_of(&store, "customer.notified") {
        assert!(
            rejected.iter().any(|r| r["id"] == n["causation"]),
            "every notification is caused by a rejection: {n}"
        );
        assert_eq!(n["meta"]["reactor"], "notify");
    }
    assert!(text.contains("└─ customer.notified"), "{text}");
    // A second demo over the same directory starts afresh.
    host_ok(
        dir.path(),
        &[
            "demo",
            "--dir",
            store.to_str().unwrap(),
            "--plugins-dir",
            plugins.to_str().unwrap(),
        ],
    );
    assert_eq!(events_of(&store, "order.placed").len(), 7);
}
