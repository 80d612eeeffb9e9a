//! Issuing certificates: the mesh CA, node certificates and operator certificates.

use std::fs;
use std::path::{Path, PathBuf};

use rcgen::string::Ia5String;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose as Eku, IsCa, Issuer, KeyPair, KeyUsagePurpose as Ku, SanType,
    SerialNumber,
};
use ring::rand::{SecureRandom, SystemRandom};
use time::{Duration, OffsetDateTime};

use super::{
    CertError, ca_trust_domain, read_first_cert, read_key_pair, write_private_file,
    write_public_file,
};
use crate::identity::{Name, Role, SpiffeId, TrustDomain};

/// File names inside a CA directory.
pub const CA_CERT: &str = "ca.crt";
/// The CA's private key.
pub const CA_KEY: &str = "ca.key";
/// The operator certificate made by `ca init`.
pub const OPERATOR_CERT: &str = "operator.crt";
/// The operator key made by `ca init`.
pub const OPERATOR_KEY: &str = "operator.key";

/// Certificates are valid from a little in the past, so that peers whose clocks lag accept them.
pub(super) const BACKDATE: Duration = Duration::minutes(5);
/// The shortest validity of a certificate.
pub const MIN_VALIDITY: std::time::Duration = std::time::Duration::from_secs(60);

/// What `murmur ca init` makes.
#[derive(Clone, Debug)]
pub struct CaInit {
    /// Directory that receives the files (created if missing).
    pub dir: PathBuf,
    /// Trust domain of the mesh.
    pub trust_domain: TrustDomain,
    /// Validity of the CA in days.
    pub days: u32,
    /// Name of the first operator.
    pub operator: Name,
    /// Overwrite existing files.
    pub force: bool,
}

/// The files `ca init` wrote.
#[derive(Clone, Debug)]
pub struct CaInitReport {
    /// CA certificate (the trust bundle to give every node).
    pub ca_cert: PathBuf,
    /// CA private key (keep it offline).
    pub ca_key: PathBuf,
    /// Operator certificate.
    pub operator_cert: PathBuf,
    /// Operator private key.
    pub operator_key: PathBuf,
    /// The operator's SPIFFE ID.
    pub operator_id: SpiffeId,
}

/// A request to issue a node or operator certificate.
#[derive(Clone, Debug)]
pub struct IssueRequest {
    /// Directory holding `ca.crt` and `ca.key`.
    pub ca_dir: PathBuf,
    /// Node or operator.
    pub role: Role,
    /// Node or operator name.
    pub name: Name,
    /// Services the node may serve (nodes only).
    pub services: Vec<Name>,
    /// How long the certificate is valid (at least a minute).
    pub validity: std::time::Duration,
    /// Directory receiving `<name>.crt` and `<name>.key`.
    pub out_dir: PathBuf,
    /// Overwrite existing files.
    pub force: bool,
}

/// The files `cert issue` wrote.
#[derive(Clone, Debug)]
pub struct IssuedFiles {
    /// Certificate (PEM).
    pub cert: PathBuf,
    /// Private key (PEM, mode 0600).
    pub key: PathBuf,
    /// The identity it carries.
    pub id: SpiffeId,
}

/// Creates a mesh CA and a first operator certificate.
pub fn init_ca(req: &CaInit) -> Result<CaInitReport, CertError> {
    let report = CaInitReport {
        ca_cert: req.dir.join(CA_CERT),
        ca_key: req.dir.join(CA_KEY),
        operator_cert: req.dir.join(OPERATOR_CERT),
        operator_key: req.dir.join(OPERATOR_KEY),
        operator_id: SpiffeId::operator(req.trust_domain.clone(), req.operator.clone()),
    };
    let targets = [
        &report.ca_cert,
        &report.ca_key,
        &report.operator_cert,
        &report.operator_key,
    ];
    refuse_existing(&targets, req.force)?;
    create_dir(&req.dir)?;

    let ca = make_ca(&req.trust_domain, days(req.days)?)?;
    let ca_key_pem = ca.key().serialize_pem();
    let (op_cert, op_key) = make_leaf(&ca, &report.operator_id, &[], days(req.days)?)?;

    write_private_file(&report.ca_key, ca_key_pem.as_bytes())?;
    write_public_file(&report.ca_cert, ca.pem().as_bytes())?;
    write_private_file(&report.operator_key, op_key.as_bytes())?;
    write_public_file(&report.operator_cert, op_cert.as_bytes())?;
    Ok(report)
}

/// Issues a node or operator certificate signed by the CA in `req.ca_dir`.
pub fn issue(req: &IssueRequest) -> Result<IssuedFiles, CertError> {
    let cert_path = req.out_dir.join(format!("{}.crt", req.name));
    let key_path = req.out_dir.join(format!("{}.key", req.name));
    refuse_existing(&[&cert_path, &key_path], req.force)?;
    if req.role == Role::Operator && !req.services.is_empty() {
        return Err(CertError::Shape(
            "--service applies to node certificates only".into(),
        ));
    }
    let (issuer, td) = load_issuer(&req.ca_dir)?;
    let id = SpiffeId {
        trust_domain: td,
        role: req.role,
        name: req.name.clone(),
    };
    let (cert_pem, key_pem) = make_leaf(&issuer, &id, &req.services, req.validity)?;
    create_dir(&req.out_dir)?;
    write_private_file(&key_path, key_pem.as_bytes())?;
    write_public_file(&cert_path, cert_pem.as_bytes())?;
    Ok(IssuedFiles {
        cert: cert_path,
        key: key_path,
        id,
    })
}

fn days(days: u32) -> Result<std::time::Duration, CertError> {
    if days == 0 {
        return Err(CertError::Shape("validity must be at least 1 day".into()));
    }
    Ok(std::time::Duration::from_secs(u64::from(days) * 86_400))
}

pub(super) fn refuse_existing(paths: &[&PathBuf], force: bool) -> Result<(), CertError> {
    if force {
        return Ok(());
    }
    match paths.iter().find(|p| p.exists()) {
        Some(p) => Err(CertError::Exists((*p).clone())),
        None => Ok(()),
    }
}

pub(super) fn create_dir(dir: &Path) -> Result<(), CertError> {
    fs::create_dir_all(dir).map_err(|source| CertError::Io {
        path: dir.to_owned(),
        source,
    })
}

pub(super) fn load_issuer(
    ca_dir: &Path,
) -> Result<(Issuer<'static, KeyPair>, TrustDomain), CertError> {
    let cert_path = ca_dir.join(CA_CERT);
    let ca_der = read_first_cert(&cert_path)?;
    let key = read_key_pair(&ca_dir.join(CA_KEY))?;
    let td = ca_trust_domain(&ca_der)?;
    let issuer = Issuer::from_ca_cert_der(&ca_der, key).map_err(|e| CertError::BadPem {
        path: cert_path,
        reason: format!("not a usable CA certificate: {e}"),
    })?;
    Ok((issuer, td))
}

/// The root of a mesh. Path length 1: it may sign issuer certificates (`murmur ca issuer`), which
/// may sign only leaves.
fn make_ca(
    td: &TrustDomain,
    validity: std::time::Duration,
) -> Result<CertifiedIssuer<'static, KeyPair>, CertError> {
    let mut p = CertificateParams::default();
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
    p.key_usages = vec![Ku::KeyCertSign, Ku::CrlSign, Ku::DigitalSignature];
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name
        .push(DnType::CommonName, format!("Murmuration mesh CA ({td})"));
    p.distinguished_name
        .push(DnType::OrganizationName, "Murmuration");
    p.subject_alt_names = vec![SanType::URI(ia5(&format!("spiffe://{td}"))?)];
    set_validity(&mut p, validity)?;
    Ok(CertifiedIssuer::self_signed(p, KeyPair::generate()?)?)
}

/// Returns (certificate PEM, key PEM) of a leaf for `id`.
fn make_leaf(
    issuer: &Issuer<'_, KeyPair>,
    id: &SpiffeId,
    services: &[Name],
    validity: std::time::Duration,
) -> Result<(String, String), CertError> {
    let mut p = leaf_params(id, services)?;
    set_validity(&mut p, validity)?;
    let key = KeyPair::generate()?;
    let cert = p.signed_by(&key, issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Everything of a leaf certificate for `id` but its validity and serial: the SPIFFE ID as the
/// only URI SAN, the node's (or operator's) DNS name, one DNS name per service, `cA` false,
/// digital signature only, server and client authentication.
pub(super) fn leaf_params(
    id: &SpiffeId,
    services: &[Name],
) -> Result<CertificateParams, CertError> {
    let mut p = CertificateParams::default();
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![Ku::DigitalSignature];
    p.extended_key_usages = vec![Eku::ServerAuth, Eku::ClientAuth];
    p.use_authority_key_identifier_extension = true;
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name
        .push(DnType::CommonName, id.name.as_str());
    p.distinguished_name
        .push(DnType::OrganizationName, "Murmuration");
    p.subject_alt_names = leaf_sans(id, services)?;
    Ok(p)
}

/// The subject alternative names of a leaf for `id` serving `services`.
pub(super) fn leaf_sans(id: &SpiffeId, services: &[Name]) -> Result<Vec<SanType>, CertError> {
    let td = &id.trust_domain;
    let mut sans = vec![SanType::URI(ia5(&id.to_string())?)];
    let own_dns = match id.role {
        Role::Node => td.node_dns_name(&id.name),
        Role::Operator => format!("{}.operator.{td}", id.name),
    };
    sans.push(SanType::DnsName(ia5(&own_dns)?));
    for s in services {
        sans.push(SanType::DnsName(ia5(&td.service_dns_name(s))?));
    }
    Ok(sans)
}

/// Valid from [`BACKDATE`] ago for `validity` from now, with a fresh random serial.
pub(super) fn set_validity(
    p: &mut CertificateParams,
    validity: std::time::Duration,
) -> Result<(), CertError> {
    if validity < MIN_VALIDITY {
        return Err(CertError::Shape(format!(
            "validity must be at least {} s",
            MIN_VALIDITY.as_secs()
        )));
    }
    let validity = Duration::try_from(validity)
        .map_err(|_| CertError::Shape("validity is too long".into()))?;
    let now = OffsetDateTime::now_utc();
    // Short-lived certificates are backdated less: a tenth of their life at most, so that half
    // of their validity window is still half of their life.
    p.not_before = now - BACKDATE.min(validity / 10);
    p.not_after = now
        .checked_add(validity)
        .ok_or_else(|| CertError::Shape("validity is too long".into()))?;
    p.serial_number = Some(random_serial()?);
    Ok(())
}

pub(super) fn random_serial() -> Result<SerialNumber, CertError> {
    let mut bytes = [0u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| CertError::Generate("no system randomness".into()))?;
    // A positive INTEGER: clear the top bit, and never start with a zero byte.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}

pub(super) fn ia5(s: &str) -> Result<Ia5String, CertError> {
    Ia5String::try_from(s).map_err(|e| CertError::Generate(format!("{s:?}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::{parse_leaf, read_certs_pem};

    fn name(s: &str) -> Name {
        Name::parse("name", s).unwrap()
    }

    #[test]
    fn ca_init_then_issue_gives_spiffe_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let ca_dir = dir.path().join("ca");
        let td = TrustDomain::parse("test.mesh").unwrap();
        let report = init_ca(&CaInit {
            dir: ca_dir.clone(),
            trust_domain: td,
            days: 10,
            operator: name("alice"),
            force: false,
        })
        .unwrap();
        let op = parse_leaf(&read_certs_pem(&report.operator_cert).unwrap()[0]).unwrap();
        assert_eq!(op.id.to_string(), "spiffe://test.mesh/operator/alice");

        let issued = issue(&IssueRequest {
            ca_dir,
            role: Role::Node,
            name: name("web-1"),
            services: vec![name("web"), name("api")],
            validity: std::time::Duration::from_secs(3 * 86_400),
            out_dir: dir.path().join("out"),
            force: false,
        })
        .unwrap();
        let info = parse_leaf(&read_certs_pem(&issued.cert).unwrap()[0]).unwrap();
        assert_eq!(info.id.to_string(), "spiffe://test.mesh/node/web-1");
        assert!(info.dns_names.contains(&"web-1.node.test.mesh".to_string()));
        let services: Vec<_> = info.services.iter().map(Name::as_str).collect();
        assert_eq!(services, ["api", "web"]);
        let lifetime = info.not_after.duration_since(info.not_before).unwrap();
        assert!(lifetime.as_secs() > 3 * 86_400 && lifetime.as_secs() < 4 * 86_400);
    }

    #[test]
    fn existing_files_are_kept_unless_forced_and_keys_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let req = CaInit {
            dir: dir.path().to_owned(),
            trust_domain: TrustDomain::default(),
            days: 1,
            operator: name("admin"),
            force: false,
        };
        let first = init_ca(&req).unwrap();
        let before = fs::read(&first.ca_cert).unwrap();
        assert!(matches!(init_ca(&req), Err(CertError::Exists(_))));
        assert_eq!(fs::read(&first.ca_cert).unwrap(), before);
        for key in [&first.ca_key, &first.operator_key] {
            let mode = fs::metadata(key).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", key.display());
        }
        init_ca(&CaInit { force: true, ..req }).unwrap();
        assert_ne!(fs::read(&first.ca_cert).unwrap(), before);
    }
}
