//! The issuer of a node holding an issuer credential: it decides whether a request may have a
//! certificate, signs it, and records a token's use in gossip (a signed `token-use` document,
//! through the policy machinery) before handing the certificate out.
//!
//! A join is granted for exactly the name and services its token names, once (or again to the
//! same key: a joiner that lost the answer asks again); a renewal for exactly the identity and
//! services of the certificate the connection proved, while that certificate is valid and not
//! revoked.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use murmur_membership::Membership;
use murmur_membership::policy::spec::{PolicyBody, TokenUseSpec};
use murmur_membership::policy::{ApplyError, Kind, PolicyHandle, Stamp, sign};
use murmur_transport::certs::{CsrError, ReadRequest, read_request};
use murmur_transport::identity::{Name, PeerIdentity, Role, SpiffeId};
use murmur_transport::issuance::protocol::{Answer, Refusal, RefusalCode};
use murmur_transport::issuance::token::{self, TokenError, VerifiedToken};
use murmur_transport::issuance::{Authority, Issued};
use murmur_transport::signing::Signer;
use murmur_transport::tls::TlsState;
use tracing::{info, warn};

use super::settings::IssuerFiles;

/// Every refusal code, in a fixed order (the counters' index).
pub const CODES: [RefusalCode; 9] = [
    RefusalCode::TokenInvalid,
    RefusalCode::TokenExpired,
    RefusalCode::TokenUsed,
    RefusalCode::WrongName,
    RefusalCode::BadRequest,
    RefusalCode::Revoked,
    RefusalCode::NotAnIssuer,
    RefusalCode::NoIssuer,
    RefusalCode::Unavailable,
];

/// What an issuer counts.
#[derive(Debug, Default)]
pub struct IssuerStats {
    /// Certificates issued for joins.
    pub joins: AtomicU64,
    /// Certificates issued for renewals.
    pub renewals: AtomicU64,
    refused: [AtomicU64; CODES.len()],
}

impl IssuerStats {
    /// Refusals by code.
    pub fn refused(&self) -> Vec<(RefusalCode, u64)> {
        CODES
            .iter()
            .zip(&self.refused)
            .map(|(c, n)| (*c, n.load(Ordering::Relaxed)))
            .collect()
    }

    fn count_refusal(&self, code: RefusalCode) {
        if let Some(i) = CODES.iter().position(|c| *c == code) {
            self.refused[i].fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A node's issuer.
#[derive(Debug)]
pub struct Issuer {
    node: Name,
    files: IssuerFiles,
    authority: RwLock<Arc<Authority>>,
    leaf_ttl: Duration,
    tls: Arc<TlsState>,
    policy: PolicyHandle,
    membership: Arc<Membership>,
    /// One join at a time: the check of a token's use and its record go together.
    joins: tokio::sync::Mutex<()>,
    stats: IssuerStats,
}

/// What an issuer is built from.
#[derive(Debug)]
pub struct IssuerParts {
    /// This node.
    pub node: Name,
    /// Where the credential lives (reloaded when it changes).
    pub files: IssuerFiles,
    /// The credential, loaded at start.
    pub authority: Authority,
    /// Lifetime of what it signs.
    pub leaf_ttl: Duration,
    /// This node's TLS state: trust bundle, revocations, the key that signs token uses.
    pub tls: Arc<TlsState>,
    /// Policy, where token uses are recorded and read.
    pub policy: PolicyHandle,
    /// Gossip, to spread a token's use at once.
    pub membership: Arc<Membership>,
}

impl Issuer {
    /// An issuer.
    pub fn new(p: IssuerParts) -> Arc<Self> {
        Arc::new(Self {
            node: p.node,
            files: p.files,
            authority: RwLock::new(Arc::new(p.authority)),
            leaf_ttl: p.leaf_ttl,
            tls: p.tls,
            policy: p.policy,
            membership: p.membership,
            joins: tokio::sync::Mutex::new(()),
            stats: IssuerStats::default(),
        })
    }

    /// Counters.
    pub fn stats(&self) -> &IssuerStats {
        &self.stats
    }

    /// The credential in use.
    pub fn authority(&self) -> Arc<Authority> {
        self.authority
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Replaces the credential (the operator renewed it).
    pub fn replace(&self, authority: Authority) {
        *self
            .authority
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(authority);
    }

    /// Whether the credential can sign now: not expired, and not revoked (what it signed would
    /// be refused everywhere).
    pub fn is_valid(&self) -> bool {
        let authority = self.authority();
        authority.not_after() > crate::clock::wall_now()
            && !self.tls.revocations().serial_revoked(authority.serial())
    }

    /// A first certificate for the holder of `token`.
    pub async fn join(&self, token_text: &str, csr: &[u8]) -> Answer {
        let outcome = self.try_join(token_text, csr).await;
        self.answer("join", outcome)
    }

    /// A new certificate for `peer`, which proved its current certificate.
    pub fn renew(&self, peer: &PeerIdentity, csr: &[u8]) -> Answer {
        let outcome = self.try_renew(peer, csr);
        self.answer("renewal", outcome)
    }

    fn answer(&self, what: &str, outcome: Result<(Issued, &'static str), Refusal>) -> Answer {
        match outcome {
            Ok((issued, _)) => {
                let counter = if what == "join" {
                    &self.stats.joins
                } else {
                    &self.stats.renewals
                };
                counter.fetch_add(1, Ordering::Relaxed);
                info!(id = %issued.info.id, serial = %issued.info.serial, "issued a certificate ({what})");
                Answer::Issued {
                    chain: issued.chain.iter().map(|c| c.to_vec()).collect(),
                    issuer: self.node.to_string(),
                }
            }
            Err(refusal) => {
                self.stats.count_refusal(refusal.code);
                warn!(code = refusal.code.as_str(), reason = %refusal.message, "refused a certificate ({what})");
                Answer::Refused(refusal)
            }
        }
    }

    async fn try_join(
        &self,
        token_text: &str,
        csr: &[u8],
    ) -> Result<(Issued, &'static str), Refusal> {
        self.check_usable()?;
        let now_ms = crate::clock::unix_now_ms();
        let bundle = self.tls.bundle();
        let token = token::verify(token_text, &bundle, now_ms).map_err(token_refusal)?;
        let claims = &token.claims;
        let id = SpiffeId::node(bundle.trust_domain().clone(), claims.name.clone());
        self.check_not_revoked(&id.name)?;
        let services: BTreeSet<Name> = claims.services.iter().cloned().collect();
        let req = read_request(csr, &id, &services).map_err(|e| csr_refusal(e, "the token"))?;
        let _one_at_a_time = self.joins.lock().await;
        self.check_unused(&token, &req)?;
        let issued = self.sign(&req, &id, &services)?;
        self.record_use(&token, &req, &issued, now_ms).await?;
        Ok((issued, "join"))
    }

    fn try_renew(
        &self,
        peer: &PeerIdentity,
        csr: &[u8],
    ) -> Result<(Issued, &'static str), Refusal> {
        self.check_usable()?;
        if peer.id.role != Role::Node {
            return Err(Refusal::new(
                RefusalCode::BadRequest,
                format!(
                    "{} is not a node: only nodes renew through issuers",
                    peer.id
                ),
            ));
        }
        let now = crate::clock::wall_now();
        if peer.not_after <= now {
            return Err(Refusal::new(
                RefusalCode::Revoked,
                format!(
                    "the certificate of {} has expired: it cannot be renewed; join again with a \
                     new token",
                    peer.id
                ),
            ));
        }
        if let Some(reason) = self.tls.revocations().of_peer(peer) {
            return Err(Refusal::new(
                RefusalCode::Revoked,
                format!("{reason}: nothing is issued for it"),
            ));
        }
        let req = read_request(csr, &peer.id, &peer.services)
            .map_err(|e| csr_refusal(e, "the current certificate"))?;
        let issued = self.sign(&req, &peer.id, &peer.services)?;
        Ok((issued, "renewal"))
    }

    fn check_usable(&self) -> Result<(), Refusal> {
        if self.is_valid() {
            return Ok(());
        }
        Err(Refusal::new(
            RefusalCode::NotAnIssuer,
            format!(
                "the issuer credential of {} has expired or is revoked: renew it (`murmur ca \
                 issuer`)",
                self.node
            ),
        ))
    }

    fn check_not_revoked(&self, name: &Name) -> Result<(), Refusal> {
        let revoked = self.tls.revocations();
        let reason = revoked
            .node_revoked(name)
            .then(|| format!("node {name} is revoked"));
        match reason {
            Some(r) => Err(Refusal::new(
                RefusalCode::Revoked,
                format!("{r}: nothing is issued for it"),
            )),
            None => Ok(()),
        }
    }

    /// Refuses a token whose use is recorded, unless to the very key it was used with.
    fn check_unused(&self, token: &VerifiedToken, req: &ReadRequest) -> Result<(), Refusal> {
        let set = self.policy.current();
        let Some(doc) = set.get(Kind::TokenUse, &token.claims.id) else {
            return Ok(());
        };
        let Some(PolicyBody::TokenUse(used)) = doc.body() else {
            return Ok(());
        };
        if used.key == req.key_hash {
            return Ok(());
        }
        Err(Refusal::new(
            RefusalCode::TokenUsed,
            format!(
                "the token {} was already used by node {} (certificate {} from issuer {}): a \
                 token admits one node once; create a new one with `murmur token create`",
                token.claims.id, used.node, used.serial, used.issuer
            ),
        ))
    }

    fn sign(
        &self,
        req: &ReadRequest,
        id: &SpiffeId,
        services: &BTreeSet<Name>,
    ) -> Result<Issued, Refusal> {
        let authority = self.authority();
        authority
            .sign(req, id, services, self.leaf_ttl, &self.tls.bundle())
            .map_err(|e| {
                Refusal::new(
                    RefusalCode::Unavailable,
                    format!("issuer {} cannot sign now: {e}", self.node),
                )
            })
    }

    /// Records the token's use in gossip before the certificate leaves: every issuer that hears
    /// of it refuses the token from then on.
    async fn record_use(
        &self,
        token: &VerifiedToken,
        req: &ReadRequest,
        issued: &Issued,
        now_ms: u64,
    ) -> Result<(), Refusal> {
        let unavailable = |e: String| {
            Refusal::new(
                RefusalCode::Unavailable,
                format!("issuer {} could not record the token's use: {e}", self.node),
            )
        };
        let name =
            Name::parse("token id", &token.claims.id).map_err(|e| unavailable(e.to_string()))?;
        let body = PolicyBody::TokenUse(TokenUseSpec {
            name: name.clone(),
            node: token.claims.name.clone(),
            key: req.key_hash.clone(),
            issuer: self.node.clone(),
            serial: issued.info.serial.clone(),
            expires_ms: token.claims.expires_ms,
        });
        let (certified, id) = self.tls.certified();
        let signer = Signer::from_certified(&certified, id);
        let stamp = Stamp {
            hlc: self.policy.status().clock.read(now_ms).next(),
            origin: self.node.to_string(),
        };
        let value = sign(&signer, Kind::TokenUse, &name, stamp, Some(&body))
            .map_err(|e| unavailable(e.to_string()))?;
        match self.policy.apply(vec![value], false).await {
            Ok(_) => {}
            Err(ApplyError::Stale { .. }) => {
                // Another issuer's record of the same token arrived meanwhile.
                return Err(Refusal::new(
                    RefusalCode::TokenUsed,
                    format!(
                        "the token {} was just used through another issuer",
                        token.claims.id
                    ),
                ));
            }
            Err(e) => return Err(unavailable(e.to_string())),
        }
        self.membership.announce().await;
        Ok(())
    }
}

fn token_refusal(e: TokenError) -> Refusal {
    let code = match e {
        TokenError::Expired { .. } => RefusalCode::TokenExpired,
        _ => RefusalCode::TokenInvalid,
    };
    Refusal::new(code, e.to_string())
}

fn csr_refusal(e: CsrError, grant: &str) -> Refusal {
    match e {
        CsrError::WrongIdentity { asked, granted } => Refusal::new(
            RefusalCode::WrongName,
            format!("{grant} admits {granted}, but the request asks for {asked}"),
        ),
        other => Refusal::new(RefusalCode::BadRequest, other.to_string()),
    }
}

/// Size and modification time of the credential's files.
type Fingerprint = [Option<(SystemTime, u64)>; 2];

#[allow(
    clippy::disallowed_methods,
    reason = "called on a blocking thread by reload_loop"
)]
fn fingerprint(files: &IssuerFiles) -> Fingerprint {
    let stat = |p: &std::path::Path| {
        let m = std::fs::metadata(p).ok()?;
        Some((m.modified().ok()?, m.len()))
    };
    [stat(&files.cert), stat(&files.key)]
}

/// Reloads the issuer credential when its files change (the operator renewed it) or the trust
/// bundle does, every `every`, until the task is dropped. A credential that does not load keeps
/// the old one in use.
pub async fn reload_loop(issuer: Arc<Issuer>, every: Duration) {
    let files = issuer.files.clone();
    let mut seen = {
        let files = files.clone();
        tokio::task::spawn_blocking(move || fingerprint(&files))
            .await
            .ok()
    };
    let mut bundle = issuer.tls.bundle().certs().to_vec();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now_bundle = issuer.tls.bundle();
        let f = files.clone();
        let Ok(print) = tokio::task::spawn_blocking(move || fingerprint(&f)).await else {
            return;
        };
        if seen.as_ref() == Some(&print) && now_bundle.certs() == bundle.as_slice() {
            continue;
        }
        let (f, b) = (files.clone(), now_bundle.clone());
        let Ok(loaded) =
            tokio::task::spawn_blocking(move || Authority::load(&f.cert, &f.key, &b)).await
        else {
            return;
        };
        // Either way this version of the files has been looked at.
        seen = Some(print);
        bundle = now_bundle.certs().to_vec();
        match loaded {
            Ok(authority) => {
                info!(serial = %authority.serial(), not_after = ?authority.not_after(), "issuer credential reloaded");
                issuer.replace(authority);
            }
            Err(e) => warn!(error = %e, "issuer credential not reloaded; keeping the current one"),
        }
    }
}
