//! Joining with a token: the node makes its key locally (it never leaves the node), reaches a
//! seed over QUIC without a certificate (checking the seed against the trust bundle), and
//! presents the token with a certificate request; any issuer of the mesh signs a certificate for
//! exactly the name and services the token grants. Key and certificate are kept where the node's
//! credentials live (the data directory by default), so a restart needs no token.
//!
//! The file work ([`prepare`], [`finish`]) runs before the node's runtime; only the exchange
//! ([`request`]) is async.

#![allow(
    clippy::disallowed_methods,
    reason = "prepare and finish run before the node's runtime starts"
)]

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use murmur_transport::certs::{
    parse_leaf, pem_certs, read_first_cert, request_for, write_private_file, write_public_file,
};
use murmur_transport::endpoint::QuicSettings;
use murmur_transport::identity::SpiffeId;
use murmur_transport::issuance::exchange::exchange_anonymous;
use murmur_transport::issuance::protocol::{Answer, Request};
use murmur_transport::issuance::token::{Claims, read_claims};
use murmur_transport::tls::{CredentialPaths, TlsState, TrustBundle, load_material};
use rcgen::KeyPair;
use rustls_pki_types::CertificateDer;
use tracing::{info, warn};

/// How long a join keeps trying seeds that cannot be reached (they may be starting too).
const PATIENCE: Duration = Duration::from_secs(60);
/// Pause between rounds over the seeds.
const ROUND_PAUSE: Duration = Duration::from_secs(1);
/// Time allowed for one seed's answer (it may forward to an issuer).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(20);

/// Everything a join needs, read from disk.
#[derive(Debug)]
pub struct JoinPlan {
    id: SpiffeId,
    token: String,
    claims: Claims,
    bundle: TrustBundle,
    seeds: Vec<SocketAddr>,
    csr: Vec<u8>,
    paths: CredentialPaths,
    quic: QuicSettings,
}

/// What a join obtained.
#[derive(Debug)]
pub struct Joined {
    chain: Vec<CertificateDer<'static>>,
    issuer: String,
    seed: String,
}

/// Decides whether to join and reads what it needs: `None` when the credential files already
/// hold a valid certificate of this node (the token was used before; it is not needed again).
pub fn prepare(
    id: &SpiffeId,
    token_file: &Path,
    paths: &CredentialPaths,
    seeds: &[String],
    quic: &QuicSettings,
) -> anyhow::Result<Option<JoinPlan>> {
    if let Ok(material) = load_material(paths, &id.trust_domain)
        && TlsState::new(id.clone(), material).is_ok()
    {
        info!(cert = %paths.cert.display(), "joined before: using the certificate on disk, not the token");
        return Ok(None);
    }
    let token = std::fs::read_to_string(token_file)
        .with_context(|| format!("cannot read the join token {}", token_file.display()))?
        .trim()
        .to_owned();
    let claims = read_claims(&token).with_context(|| token_file.display().to_string())?;
    let bundle = TrustBundle::load(&paths.bundle, id.trust_domain.clone())
        .context("the trust bundle is needed to check the seed")?;
    let key = key_for_join(&paths.key)?;
    let csr = request_for(&key, id, &claims.services)?;
    Ok(Some(JoinPlan {
        id: id.clone(),
        token,
        claims,
        bundle,
        seeds: resolve(seeds)?,
        csr,
        paths: paths.clone(),
        quic: quic.clone(),
    }))
}

/// The key the join asks a certificate for: the one a previous, unfinished join left (the
/// issuer gives the same key its certificate again), or a new one, saved before it is used.
fn key_for_join(path: &Path) -> anyhow::Result<KeyPair> {
    if let Ok(pem) = std::fs::read_to_string(path)
        && let Ok(key) = KeyPair::from_pem(&pem)
        && key.algorithm() == &rcgen::PKCS_ECDSA_P256_SHA256
    {
        return Ok(key);
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let key = KeyPair::generate().context("cannot generate a key")?;
    write_private_file(path, key.serialize_pem().as_bytes())?;
    Ok(key)
}

fn resolve(seeds: &[String]) -> anyhow::Result<Vec<SocketAddr>> {
    let addrs: Vec<SocketAddr> = seeds
        .iter()
        .filter_map(|s| match s.to_socket_addrs() {
            Ok(mut a) => a.next(),
            Err(e) => {
                warn!(seed = %s, error = %e, "seed does not resolve");
                None
            }
        })
        .collect();
    if addrs.is_empty() {
        bail!("a node joining with a token needs a seed to reach: give --seed HOST:PORT");
    }
    Ok(addrs)
}

/// Asks the seeds in turn until one answers for good. A refusal that another issuer could not
/// change (the token used, expired or for another name, the request refused) ends the join.
pub async fn request(plan: &JoinPlan) -> anyhow::Result<Joined> {
    let request = Request::Join {
        token: plan.token.clone(),
        csr: plan.csr.clone(),
    };
    let started = Instant::now();
    let mut last = String::new();
    loop {
        for seed in &plan.seeds {
            let answer = exchange_anonymous(
                plan.bundle.clone(),
                *seed,
                &request,
                &plan.quic,
                ANSWER_TIMEOUT,
            )
            .await;
            match answer {
                Ok((Answer::Issued { chain, issuer }, seed_name)) => {
                    return Ok(Joined {
                        chain: chain.into_iter().map(CertificateDer::from).collect(),
                        issuer,
                        seed: seed_name,
                    });
                }
                Ok((Answer::Refused(r), seed_name)) if r.code.worth_another_issuer() => {
                    last = format!("seed {seed_name} ({seed}): {}", r.message);
                }
                Ok((Answer::Refused(r), seed_name)) => {
                    bail!(
                        "the mesh refused the join token (via seed {seed_name}, {seed}): {}",
                        r.message
                    );
                }
                Err(e) => last = format!("seed {seed}: {e}"),
            }
            warn!(%last, "join attempt failed; trying again");
        }
        if started.elapsed() > PATIENCE {
            bail!(
                "could not join within {} s; last: {last}",
                PATIENCE.as_secs()
            );
        }
        tokio::time::sleep(ROUND_PAUSE).await;
    }
}

/// Checks what the join obtained (it must be for this node, chain to the bundle and match the
/// key) and writes the certificate beside the key.
pub fn finish(plan: &JoinPlan, joined: &Joined) -> anyhow::Result<()> {
    let pem = pem_certs(&joined.chain);
    let tmp = plan.paths.cert.with_extension("joining");
    write_public_file(&tmp, pem.as_bytes())?;
    let check = CredentialPaths {
        cert: tmp.clone(),
        ..plan.paths.clone()
    };
    let usable = load_material(&check, &plan.id.trust_domain)
        .and_then(|m| TlsState::new(plan.id.clone(), m));
    if let Err(e) = usable {
        let _ = std::fs::remove_file(&tmp);
        bail!("issuer {} sent an unusable certificate: {e}", joined.issuer);
    }
    std::fs::rename(&tmp, &plan.paths.cert)
        .with_context(|| format!("cannot write {}", plan.paths.cert.display()))?;
    let not_after = read_first_cert(&plan.paths.cert)
        .ok()
        .and_then(|c| parse_leaf(&c).ok())
        .map(|i| i.not_after);
    info!(
        id = %plan.id,
        token = %plan.claims.id,
        issuer = %joined.issuer,
        seed = %joined.seed,
        ?not_after,
        cert = %plan.paths.cert.display(),
        "joined the mesh with a token"
    );
    Ok(())
}
