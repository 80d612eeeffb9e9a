//! What the stub cells look like: a synthetic view of a cell of the full cell's shape, which
//! their custodians summarize with the real summary code (`murmur_membership::cells`).

use std::collections::BTreeMap;

use murmur_membership::cells::summary;
use murmur_membership::records::Balancer;
use murmur_membership::{ClusterView, Endpoint, Member, MemberState};

use crate::cluster::{host_addr, host_name, service, service_of};

/// Prefix of policy documents the harness carries between cells (see `link`).
pub const POLICY_PREFIX: &str = "pol/";

/// Name of cell `c`.
pub fn cell_name(c: usize) -> String {
    format!("c{c:03}")
}

/// The view a member of a cell of `size` hosts from host `first` would have, every member
/// alive and serving (node `i` serves `service_of(i)`, as in the full cell).
pub fn synthetic_view(first: usize, size: usize) -> ClusterView {
    let record = service();
    let mut view = ClusterView {
        self_name: host_name(first),
        ..ClusterView::default()
    };
    for i in 0..size {
        let name = host_name(first + i);
        let svc = service_of(i);
        view.members.insert(
            name.clone(),
            Member {
                name: name.clone(),
                generation: 1,
                mesh_addr: host_addr(first + i),
                admin_addr: None,
                labels: BTreeMap::new(),
                state: MemberState::Alive,
                services: vec![svc.clone()],
                stale: false,
                extensions: BTreeMap::new(),
            },
        );
        view.services
            .entry(svc.clone())
            .or_default()
            .push(Endpoint {
                service: svc,
                node: murmur_transport::testing::name(&name),
                mesh_addr: host_addr(first + i),
                protocol: record.protocol,
                labels: record.labels.clone(),
                weight: record.weight,
                health: record.health,
                balancer: Balancer::default(),
                draining: false,
                stale: false,
                cell: None,
            });
    }
    view
}

/// Weights from this one up are marks a trial left (the stubs' churn sets 1 to 7).
pub const MARKS_FROM: u32 = 100;

/// One step of a stub cell's churn: the weight of instance `pick(n)` of service `pick(n)`
/// becomes `1 + step % 7`, unless it holds a trial's mark. A mark overwritten before it spread
/// is never seen again anywhere, and the trial would count the cells it missed as never reached.
pub fn churn(view: &mut ClusterView, step: u32, mut pick: impl FnMut(usize) -> usize) {
    let k = pick(view.services.len());
    let Some(eps) = view.services.values_mut().nth(k) else {
        return;
    };
    let i = pick(eps.len());
    if let Some(e) = eps.get_mut(i)
        && e.weight < MARKS_FROM
    {
        e.weight = 1 + step % 7;
    }
}

/// Whether `body`, the value of `cell`'s shard of `service`, has an instance of weight
/// `weight` (the mark a trial leaves).
pub fn shard_has_weight(cell: &str, service: &str, body: &str, weight: u32) -> bool {
    summary::decode_shard(cell, service, body)
        .is_ok_and(|s| s.instances.iter().any(|i| i.weight == weight))
}

#[cfg(test)]
mod tests {
    use super::*;
    use murmur_membership::cells::publish;

    #[test]
    fn a_synthetic_cell_summarizes_to_shards_under_the_value_limit() {
        let view = synthetic_view(400, 200);
        let content = publish::summarize("c002", &view, Vec::new(), [0; 32]);
        assert_eq!(content.shards.len(), 20);
        let values = publish::values(&content, 1).unwrap();
        assert_eq!(values.len(), 21);
        for (k, v) in &values {
            assert!(v.len() < murmur_membership::records::MAX_VALUE_BYTES, "{k}");
        }
        let (k, v) = &values[0];
        let svc = k.rsplit('/').next().unwrap();
        assert!(shard_has_weight("c002", svc, v, 1));
        assert!(!shard_has_weight("c002", svc, v, 7));
    }

    #[test]
    fn churn_changes_weights_but_never_a_mark() {
        let mut view = synthetic_view(400, 4);
        let svc = service_of(2);
        let first = |v: &ClusterView| v.services[&svc][0].weight;
        let index = view.services.keys().position(|k| *k == svc).unwrap();
        // The service at `index` among four, then its one instance.
        let pick = |n: usize| if n == 4 { index } else { 0 };
        churn(&mut view, 3, pick);
        assert_eq!(first(&view), 4, "an ordinary weight churns");
        view.services.get_mut(&svc).unwrap()[0].weight = MARKS_FROM + 5;
        churn(&mut view, 4, pick);
        assert_eq!(first(&view), MARKS_FROM + 5, "a mark stays");
    }
}
