//! The bus proxy's filter (`busproxy/policy.rs`), fed a conversation as the
//! proxy feeds it: whole messages from the app and from the bus, in order.
//!
//! The first byte picks the policy: bit 0 set is `socket=session-bus`
//! (unfiltered), else talk/own/see grants and the portal's aliases. Then
//! records follow, each one byte (bit 0: from the bus; bits 1-2: the
//! descriptors that came with it) and one message, cut where its header's
//! lengths say, as the proxy cuts its input. A message whose lengths are
//! bad or run past the end takes the rest of the input.
#![no_main]

use appbox::busproxy::message::{message_length, parse_header, MessageType};
use appbox::busproxy::policy::{Decision, Filter, Policy, MAX_TRACKED, PORTAL_ALIASES};
use appbox::permissions::{Change, Permissions};
use libfuzzer_sys::fuzz_target;

fn policy(unfiltered: bool) -> Policy {
    let args: &[&str] = if unfiltered {
        &["--socket=session-bus"]
    } else {
        &[
            "--talk-name=org.freedesktop.Notifications",
            "--talk-name=org.fuzz.Talk.*",
            "--own-name=org.fuzz.App",
            "--own-name=org.fuzz.App.*",
            "--see-name=org.fuzz.Seen",
        ]
    };
    let changes: Vec<Change> = args
        .iter()
        .map(|arg| Change::parse(arg).expect("a valid permission"))
        .collect();
    Policy::new(&Permissions::from_changes(&changes), PORTAL_ALIASES)
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, mut rest)) = data.split_first() else {
        return;
    };
    let unfiltered = control & 1 != 0;
    let mut filter = Filter::new(policy(unfiltered));
    while let Some((&record, after)) = rest.split_first() {
        let from_bus = record & 1 != 0;
        let fds = usize::from((record >> 1) & 3);
        let len = match message_length(after) {
            Ok(Some(len)) if len <= after.len() => len,
            _ => after.len(),
        };
        let (msg, next) = after.split_at(len);
        rest = next;
        let decision = if from_bus {
            filter.from_bus_with_fds(msg, fds)
        } else {
            filter.from_app_with_fds(msg, fds)
        };
        match &decision {
            Decision::Forward(bytes) => {
                // Nothing reaches either side that dbus-daemon would refuse.
                let header = parse_header(bytes).expect("a forwarded message parses");
                assert_eq!(header.unix_fds as usize, fds, "descriptors forwarded");
                if !from_bus && !unfiltered && header.message_type == MessageType::MethodCall {
                    // A call without DESTINATION is a broadcast call.
                    assert!(header.destination.is_some(), "{header:?}");
                }
            }
            Decision::Reply(bytes) => {
                assert!(!from_bus, "only calls from the app are answered");
                parse_header(bytes).expect("a made-up reply parses");
            }
            Decision::Drop => {}
            Decision::Disconnect(error) => {
                let _ = error.to_string();
                return;
            }
        }
        assert!(filter.tracked_entries() <= 5 * MAX_TRACKED);
    }
});
