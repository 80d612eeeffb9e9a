//! Documents handed to this node directly (`murmur policy apply`): checked as strictly as
//! gossip, plus rules that only make sense for a direct apply.

use std::sync::Arc;

use super::scan::Engine;
use crate::policy::document::{PolicyDocument, Rejection, verify};
use crate::policy::{Kind, Stamp};

/// What an apply did (or, in a dry run, would do) to one document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ApplyOutcome {
    /// A new document.
    Created,
    /// A new version of an existing document.
    Updated,
    /// A delete of an existing document.
    Deleted,
    /// The same body is already in force: nothing to do.
    Unchanged,
    /// A delete of a document that does not exist: nothing to do.
    Absent,
}

impl ApplyOutcome {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Updated => "updated",
            Self::Deleted => "deleted",
            Self::Unchanged => "unchanged",
            Self::Absent => "absent",
        }
    }
}

/// The result for one document of an apply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApplyResult {
    /// Kind.
    pub kind: Kind,
    /// Name.
    pub name: String,
    /// What happened.
    pub outcome: ApplyOutcome,
    /// The stamp of the version handed in.
    pub stamp: Stamp,
    /// The stamp of the version it replaced, if any.
    pub previous: Option<Stamp>,
}

/// Why an apply was refused; nothing of the batch was applied.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApplyError {
    /// No documents.
    #[error("no documents to apply")]
    Empty,
    /// A document failed verification.
    #[error("document {}: {reason}", index + 1)]
    Rejected {
        /// Its position in the batch (from 0).
        index: usize,
        /// Why.
        reason: Rejection,
    },
    /// A document stamped for another node.
    #[error(
        "{kind} {name:?} is stamped for node {origin:?}, but this is node {node:?}: stamp \
         documents for the node you hand them to"
    )]
    WrongOrigin {
        /// Kind.
        kind: Kind,
        /// Name.
        name: String,
        /// The stamp's origin.
        origin: String,
        /// This node.
        node: String,
    },
    /// A newer version exists: the document was stamped before it was seen.
    #[error(
        "{kind} {name:?}: a newer version ({current}) is in force than the one handed in \
         ({stamp}); apply again"
    )]
    Stale {
        /// Kind.
        kind: Kind,
        /// Name.
        name: String,
        /// The stamp handed in.
        stamp: Stamp,
        /// The winner's stamp.
        current: Stamp,
    },
    /// The policy service has stopped.
    #[error("the policy service has stopped")]
    Stopped,
}

impl Engine {
    /// Checks every document, then (unless `dry_run`) merges them all.
    pub(super) fn apply(
        &mut self,
        values: Vec<String>,
        dry_run: bool,
        now_ms: u64,
    ) -> Result<Vec<ApplyResult>, ApplyError> {
        if values.is_empty() {
            return Err(ApplyError::Empty);
        }
        let bundle = (self.config.bundle)();
        let cx = self.context(&bundle, now_ms);
        let mut scratch = self.store.clone();
        let mut results = Vec::with_capacity(values.len());
        for (index, value) in values.iter().enumerate() {
            let doc = match verify(value, &cx) {
                Ok(doc) => doc,
                Err(reason) => {
                    self.count(&reason, "apply");
                    return Err(ApplyError::Rejected { index, reason });
                }
            };
            if doc.stamp().origin != self.config.node {
                return Err(ApplyError::WrongOrigin {
                    kind: doc.kind(),
                    name: doc.name().to_string(),
                    origin: doc.stamp().origin.clone(),
                    node: self.config.node.clone(),
                });
            }
            let current = scratch.get(doc.kind(), doc.name().as_str()).cloned();
            let outcome = decide(&doc, current.as_deref())?;
            results.push(ApplyResult {
                kind: doc.kind(),
                name: doc.name().to_string(),
                outcome,
                stamp: doc.stamp().clone(),
                previous: current.map(|c| c.stamp().clone()),
            });
            if matches!(
                outcome,
                ApplyOutcome::Created | ApplyOutcome::Updated | ApplyOutcome::Deleted
            ) {
                scratch.offer(Arc::new(doc));
            }
        }
        if !dry_run {
            self.store = scratch;
            self.changes += 1;
        }
        Ok(results)
    }
}

fn decide(
    doc: &PolicyDocument,
    current: Option<&PolicyDocument>,
) -> Result<ApplyOutcome, ApplyError> {
    let Some(cur) = current else {
        return Ok(if doc.is_tombstone() {
            ApplyOutcome::Absent
        } else {
            ApplyOutcome::Created
        });
    };
    if doc.is_tombstone() && cur.is_tombstone() {
        return Ok(ApplyOutcome::Absent);
    }
    if doc.body().is_some() && doc.body() == cur.body() {
        return Ok(ApplyOutcome::Unchanged);
    }
    if doc.rank() <= cur.rank() {
        return Err(ApplyError::Stale {
            kind: doc.kind(),
            name: doc.name().to_string(),
            stamp: doc.stamp().clone(),
            current: cur.stamp().clone(),
        });
    }
    Ok(match (doc.is_tombstone(), cur.is_tombstone()) {
        (true, _) => ApplyOutcome::Deleted,
        (false, true) => ApplyOutcome::Created,
        (false, false) => ApplyOutcome::Updated,
    })
}
