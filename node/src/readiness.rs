//! Readiness: the one rule behind `GET /readyz` and systemd's `Type=notify`.
//!
//! A node is ready when it is serving (not draining or leaving) and has joined: another member
//! is alive in its gossip view, unless it has no seeds (it is the first node of its mesh).
//! Under systemd (`NOTIFY_SOCKET` set) the node sends `READY=1` once that first holds,
//! `STATUS=` lines while it waits, and `STOPPING=1` when it begins to drain. Without
//! `NOTIFY_SOCKET` every notification is a no-op.

use std::sync::Arc;

use murmur_membership::records::NodeStatus;
use murmur_membership::{ClusterView, MemberState};
use sd_notify::NotifyState;
use tokio::sync::watch;
use tracing::{info, warn};

/// Why a node is not ready, or `Ok` when it is.
pub fn check(status: NodeStatus, view: &ClusterView, has_seeds: bool) -> Result<(), String> {
    if status != NodeStatus::Serving {
        return Err(format!("{status:?}").to_lowercase());
    }
    let peer_alive = view
        .members
        .values()
        .any(|m| m.name != view.self_name && m.state == MemberState::Alive && !m.stale);
    if has_seeds && !peer_alive {
        return Err("no peer reached yet (seeds unreachable?)".to_owned());
    }
    Ok(())
}

/// Tells systemd `READY=1` the first time `ready` accepts the view, re-checking at every view
/// change; meanwhile `STATUS=` says why not. Returns after `READY=1`, or when the view ends.
pub async fn notify_when_ready<F>(mut views: watch::Receiver<Arc<ClusterView>>, ready: F)
where
    F: Fn(&ClusterView) -> Result<(), String>,
{
    let mut last_reason = String::new();
    loop {
        let verdict = ready(&views.borrow_and_update());
        match verdict {
            Ok(()) => {
                info!("ready: joined and serving");
                notify(&[NotifyState::Status("joined; serving"), NotifyState::Ready]);
                return;
            }
            Err(reason) if reason != last_reason => {
                notify(&[NotifyState::Status(&format!("not ready: {reason}"))]);
                last_reason = reason;
            }
            Err(_) => {}
        }
        if views.changed().await.is_err() {
            return;
        }
    }
}

/// Tells systemd the node is stopping (it drains, then leaves).
pub fn stopping() {
    notify(&[NotifyState::Status("draining"), NotifyState::Stopping]);
}

fn notify(states: &[NotifyState<'_>]) {
    // Not fatal to the node; but a service manager left waiting for READY=1 will stop it at its
    // start timeout, so say why. Abstract socket names (`@...`) are not supported.
    if let Err(e) = sd_notify::notify(states) {
        warn!(error = %e, "cannot notify the service manager (NOTIFY_SOCKET)");
    }
}

#[cfg(test)]
mod tests {
    use murmur_membership::Member;

    use super::*;

    fn view(peers: &[(&str, MemberState, bool)]) -> ClusterView {
        let mut v = ClusterView {
            self_name: "me".into(),
            ..ClusterView::default()
        };
        for (name, state, stale) in [("me", MemberState::Alive, false)].iter().chain(peers) {
            let member = Member {
                name: (*name).into(),
                generation: 1,
                mesh_addr: ([127, 0, 0, 1], 7420).into(),
                admin_addr: None,
                labels: Default::default(),
                state: *state,
                services: Vec::new(),
                stale: *stale,
                extensions: Default::default(),
            };
            v.members.insert((*name).into(), member);
        }
        v
    }

    #[test]
    fn a_seeded_node_is_ready_only_with_a_live_peer_heard_by_gossip() {
        let serving = NodeStatus::Serving;
        assert!(check(serving, &view(&[]), true).is_err(), "alone");
        let stale = view(&[("b", MemberState::Alive, true)]);
        assert!(check(serving, &stale, true).is_err(), "peer only from disk");
        let dead = view(&[("b", MemberState::Dead, false)]);
        assert!(check(serving, &dead, true).is_err(), "peer dead");
        let live = view(&[("b", MemberState::Alive, false)]);
        assert_eq!(check(serving, &live, true), Ok(()));
    }

    #[test]
    fn a_seedless_node_is_ready_alone_but_never_while_draining() {
        assert_eq!(check(NodeStatus::Serving, &view(&[]), false), Ok(()));
        let live = view(&[("b", MemberState::Alive, false)]);
        assert_eq!(
            check(NodeStatus::Draining, &live, true),
            Err("draining".to_owned())
        );
    }
}
