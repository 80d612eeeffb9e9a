//! An issuer node signs its own certificate when it has none, or only an expired one of its own
//! (it was stopped for longer than its certificate lived): its issuer credential may sign any
//! name of the trust domain, so signing its own is no new power, and the mesh does not depend on
//! someone issuing by hand again. Runs before the node's runtime.

#![allow(
    clippy::disallowed_methods,
    reason = "runs before the node's runtime starts"
)]

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use murmur_transport::certs::{
    make_request, parse_leaf, pem_certs, read_first_cert, read_request, write_private_file,
    write_public_file,
};
use murmur_transport::identity::{Name, SpiffeId};
use murmur_transport::issuance::Authority;
use murmur_transport::tls::{CredentialPaths, TrustBundle};
use tracing::warn;

use super::settings::IssuerFiles;

/// Whether the credential files call for a certificate of our own: the certificate file is
/// missing, or holds an expired certificate of this very node. Anything else (another node's
/// certificate, a damaged file) is for a person to look at.
pub fn wanted(paths: &CredentialPaths, id: &SpiffeId, now: SystemTime) -> bool {
    if !paths.cert.exists() {
        return true;
    }
    read_first_cert(&paths.cert)
        .ok()
        .and_then(|c| parse_leaf(&c).ok())
        .is_some_and(|info| info.id == *id && info.not_after <= now)
}

/// Signs a certificate for `id` with the node's issuer credential, for the services the old
/// certificate named (or `services` when there was none), valid `ttl`, and writes it with a
/// new key over the credential files.
pub fn issue_own(
    id: &SpiffeId,
    services: &[Name],
    issuer: &IssuerFiles,
    paths: &CredentialPaths,
    ttl: Duration,
) -> anyhow::Result<()> {
    let bundle = TrustBundle::load(&paths.bundle, id.trust_domain.clone())?;
    let authority = Authority::load(&issuer.cert, &issuer.key, &bundle).with_context(|| {
        format!(
            "the issuer credential {} cannot sign",
            issuer.cert.display()
        )
    })?;
    let previous: Option<BTreeSet<Name>> = read_first_cert(&paths.cert)
        .ok()
        .and_then(|c| parse_leaf(&c).ok())
        .map(|info| info.services);
    let services: BTreeSet<Name> = previous.unwrap_or_else(|| services.iter().cloned().collect());
    let listed: Vec<Name> = services.iter().cloned().collect();
    let (key, csr) = make_request(id, &listed)?;
    let req = read_request(&csr, id, &services).map_err(|e| anyhow::anyhow!("{e}"))?;
    let issued = authority.sign(&req, id, &services, ttl, &bundle)?;
    if issued.chain.is_empty() {
        bail!("the issuer signed nothing");
    }
    if let Some(dir) = paths.key.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    write_private_file(&paths.key, key.serialize_pem().as_bytes())?;
    write_public_file(&paths.cert, pem_certs(&issued.chain).as_bytes())?;
    warn!(
        cert = %paths.cert.display(),
        serial = %issued.info.serial,
        "no usable certificate of this node: signed one with its own issuer credential"
    );
    Ok(())
}
