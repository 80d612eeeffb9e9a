//! What the policy service is started with, and what it reports.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use murmur_transport::tls::TrustBundle;

use crate::policy::Hlc;
use crate::policy::document::PolicyDocument;
use crate::policy::store::PolicySet;

/// Where the trust bundle comes from: called for every verification round, so a reloaded
/// bundle takes effect at once.
pub type BundleSource = Arc<dyn Fn() -> TrustBundle + Send + Sync>;

/// Policy settings of a node.
#[derive(Clone)]
pub struct PolicyConfig {
    /// This node's name: the origin of what it takes by apply.
    pub node: String,
    /// The trust bundle operators' chains must verify against.
    pub bundle: BundleSource,
    /// Stamps further ahead of this node's clock are refused.
    pub max_skew: Duration,
    /// How long a delete is remembered (and republished) after it was stamped.
    pub tombstone_retention: Duration,
    /// Nodes besides the origin that republish each document.
    pub custodians: usize,
    /// Where the winning set is kept; `None` keeps nothing.
    pub file: Option<PathBuf>,
    /// How often gossip is scanned even when nothing announced a change (a `policy/` key
    /// changing, or the view, wakes the task at once).
    pub refresh: Duration,
}

impl PolicyConfig {
    /// Defaults: 60 s skew, 24 h tombstone retention, 3 custodians, no file, 500 ms refresh.
    pub fn new(node: impl Into<String>, bundle: BundleSource) -> Self {
        Self {
            node: node.into(),
            bundle,
            max_skew: Duration::from_secs(60),
            tombstone_retention: Duration::from_secs(24 * 3600),
            custodians: 3,
            file: None,
            refresh: Duration::from_millis(500),
        }
    }
}

impl std::fmt::Debug for PolicyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyConfig")
            .field("node", &self.node)
            .field("max_skew", &self.max_skew)
            .field("tombstone_retention", &self.tombstone_retention)
            .field("custodians", &self.custodians)
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

/// What a node knows about policy, for the admin API.
#[derive(Clone, Debug, Default)]
pub struct PolicyStatus {
    /// This node.
    pub node: String,
    /// Highest stamp clock seen; a new version must be stamped above `clock.read(now)`.
    pub clock: Hlc,
    /// The effective set.
    pub effective: Arc<PolicySet>,
    /// Every winner, tombstones included.
    pub winners: Vec<Arc<PolicyDocument>>,
    /// Documents refused, by reason code (see [`crate::policy::Rejection::code`]).
    pub rejected: BTreeMap<&'static str, u64>,
}

impl PolicyStatus {
    /// All refusals.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }
}
