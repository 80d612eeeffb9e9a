//! The services this node serves: those of `[[service]]` in the config plus those registered at
//! runtime through the admin API, each published to gossip as `svc/<service>/<node>`.
//!
//! A node may only serve what its certificate names (`<service>.svc.<trust-domain>`): callers
//! check the same thing before they send, so registering anything else would only attract
//! traffic that never comes. Runtime registrations are kept in the data directory
//! (`registrations.json`) and restored at the next start. The config file wins: a service it
//! defines cannot be registered over the API, and a saved registration of such a service is
//! kept in the file but not restored (it is logged at every start).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock};

use http::uri::Authority;

use murmur_membership::Membership;
use murmur_membership::records::{Balancer, Health, Protocol, RECORD_VERSION, ServiceRecord};
use murmur_transport::certs::CertInfo;
use murmur_transport::identity::Name;

use crate::api::services::RegisterRequest;
use crate::health::CheckConfig;

/// A local service instance this node serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalService {
    /// Service name.
    pub name: Name,
    /// Local address of the instance.
    pub address: SocketAddr,
    /// Protocol.
    pub protocol: Protocol,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Weight.
    pub weight: u32,
    /// How callers balance over the service's instances (published with the record).
    pub balancer: Balancer,
    /// Active health check.
    pub health: Option<CheckConfig>,
    /// `address` as the authority of the requests sent to the app, made once here rather than
    /// formatted and parsed again for every request (`None` only if it would not parse).
    pub(crate) authority: Option<Authority>,
}

impl LocalService {
    /// A service as written in the file or in a runtime registration, with the defaults filled
    /// in: protocol `http`, weight 1 (0 counts as 1), balancer `p2c-ewma`, no health check.
    pub fn with_defaults(
        name: Name,
        address: SocketAddr,
        labels: BTreeMap<String, String>,
        protocol: Option<Protocol>,
        weight: Option<u32>,
        balancer: Option<Balancer>,
    ) -> Self {
        Self {
            name,
            authority: Authority::try_from(address.to_string()).ok(),
            address,
            protocol: protocol.unwrap_or(Protocol::Http),
            labels,
            weight: weight.unwrap_or(1).max(1),
            balancer: balancer.unwrap_or_default(),
            health: None,
        }
    }

    /// The service a runtime registration describes.
    pub fn registered(req: &RegisterRequest) -> Self {
        Self::with_defaults(
            req.name.clone(),
            req.address,
            req.labels.clone(),
            req.protocol,
            req.weight,
            req.balancer,
        )
    }
}

/// Why a service could not be registered or deregistered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// The certificate does not name the service.
    #[error(
        "service {service} is not in this node's certificate (it names: {named}); issue one with \
         `murmur cert issue ... --service {service}`"
    )]
    NotInCertificate {
        /// The service.
        service: Name,
        /// What the certificate names.
        named: String,
    },
    /// No such local service.
    #[error("this node does not serve {0}")]
    Unknown(String),
    /// The config file defines the service: the file wins at every start.
    #[error(
        "service {0} is defined in the config file, which wins at every start: change it there \
         (a registration over the API would be ignored at the next start)"
    )]
    Configured(Name),
    /// The gossip record could not be written.
    #[error("cannot publish {service}: {reason}")]
    Publish {
        /// The service.
        service: Name,
        /// Why.
        reason: String,
    },
}

/// The local service registry. Reads (one per inbound request) take a read lock and an `Arc`.
#[derive(Debug, Default)]
pub struct Services {
    map: RwLock<Arc<BTreeMap<String, Arc<LocalService>>>>,
    /// Registrations made at run time, kept in `file` so a restart loses none.
    #[allow(
        clippy::disallowed_types,
        reason = "registrations change on admin requests only"
    )]
    runtime: std::sync::Mutex<BTreeMap<String, RegisterRequest>>,
    file: Option<PathBuf>,
    /// Services the config file defines.
    configured: std::collections::BTreeSet<String>,
    /// Held while the file is written, so saves land in the order they were made.
    saving: tokio::sync::Mutex<()>,
    /// Health from the active checks; a service without a check is always passing.
    health: RwLock<BTreeMap<String, Health>>,
}

/// Checks that `cert` names `service`.
pub fn check_allowed(cert: &CertInfo, service: &Name) -> Result<(), ServiceError> {
    if cert.services.contains(service) {
        return Ok(());
    }
    let named: Vec<&str> = cert.services.iter().map(Name::as_str).collect();
    Err(ServiceError::NotInCertificate {
        service: service.clone(),
        named: if named.is_empty() {
            "none".to_owned()
        } else {
            named.join(", ")
        },
    })
}

/// The gossip record of a local service in a given health.
pub fn record(s: &LocalService, health: Health) -> ServiceRecord {
    ServiceRecord {
        version: RECORD_VERSION,
        protocol: s.protocol,
        labels: s.labels.clone(),
        weight: s.weight,
        health,
        balancer: s.balancer,
    }
}

impl Services {
    /// The configured services, after checking the certificate names each of them.
    pub fn from_config(configured: &[LocalService], cert: &CertInfo) -> Result<Self, ServiceError> {
        let mut map = BTreeMap::new();
        let mut health = BTreeMap::new();
        for s in configured {
            check_allowed(cert, &s.name)?;
            map.insert(s.name.to_string(), Arc::new(s.clone()));
            // A checked instance takes no traffic before its first check passes.
            if s.health.is_some() {
                health.insert(s.name.to_string(), Health::Critical);
            }
        }
        Ok(Self {
            map: RwLock::new(Arc::new(map)),
            runtime: Default::default(),
            file: None,
            configured: configured.iter().map(|s| s.name.to_string()).collect(),
            saving: tokio::sync::Mutex::new(()),
            health: RwLock::new(health),
        })
    }

    /// Keeps runtime registrations in `file`, restoring those it already holds (a registration
    /// the certificate no longer allows is dropped with a warning).
    #[allow(
        clippy::disallowed_methods,
        reason = "called while the node prepares, before its runtime starts"
    )]
    pub fn with_registrations(mut self, file: PathBuf, cert: &CertInfo) -> Self {
        let saved: Vec<RegisterRequest> = std::fs::read(&file)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        for req in saved {
            if let Err(e) = check_allowed(cert, &req.name) {
                tracing::warn!(error = %e, "a saved registration is dropped");
                continue;
            }
            if self.configured.contains(req.name.as_str()) {
                tracing::warn!(
                    service = %req.name, registered = %req.address, file = %file.display(),
                    "the config file defines this service and wins: the registration made over \
                     the admin API is ignored (deregister it, or remove the service from the config)"
                );
                self.runtime
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(req.name.to_string(), req);
                continue;
            }
            let config = LocalService::registered(&req);
            self.update(|m| {
                m.insert(config.name.to_string(), Arc::new(config));
            });
            self.runtime
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(req.name.to_string(), req);
        }
        self.file = Some(file);
        self
    }

    /// Registers a service at run time and remembers it across restarts.
    pub async fn register_runtime(
        &self,
        req: RegisterRequest,
        cert: &CertInfo,
        membership: &Membership,
    ) -> Result<(), ServiceError> {
        if self.configured.contains(req.name.as_str()) {
            return Err(ServiceError::Configured(req.name));
        }
        self.register(LocalService::registered(&req), cert, membership)
            .await?;
        self.runtime
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(req.name.to_string(), req);
        self.save().await;
        Ok(())
    }

    /// Writes the runtime registrations to the file, off the async runtime's thread.
    async fn save(&self) {
        let Some(file) = self.file.clone() else {
            return;
        };
        let _order = self.saving.lock().await;
        let all: Vec<RegisterRequest> = self
            .runtime
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        let shown = file.display().to_string();
        #[allow(clippy::disallowed_methods, reason = "on a blocking thread")]
        let saved = tokio::task::spawn_blocking(move || {
            let body = serde_json::to_vec_pretty(&all).map_err(std::io::Error::other)?;
            let tmp = file.with_extension("tmp");
            std::fs::write(&tmp, body)?;
            std::fs::rename(&tmp, &file)
        })
        .await
        .map_err(std::io::Error::other)
        .and_then(|r| r);
        if let Err(e) = saved {
            tracing::warn!(error = %e, file = %shown, "cannot save registrations");
        }
    }

    /// The current health of a local service.
    pub fn health(&self, service: &str) -> Health {
        self.health
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(service)
            .copied()
            .unwrap_or(Health::Passing)
    }

    /// Records a check result and republishes the service with it.
    pub async fn set_health(
        &self,
        service: &str,
        health: Health,
        membership: &Membership,
    ) -> Result<(), ServiceError> {
        let Some(config) = self.get(service) else {
            return Err(ServiceError::Unknown(service.to_owned()));
        };
        self.health
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(service.to_owned(), health);
        publish(membership, &config, health).await
    }

    /// The local instance of `service`, if this node serves it.
    pub fn get(&self, service: &str) -> Option<Arc<LocalService>> {
        self.snapshot().get(service).cloned()
    }

    /// Every local service.
    pub fn snapshot(&self) -> Arc<BTreeMap<String, Arc<LocalService>>> {
        self.map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Publishes every local service (at startup).
    pub async fn publish_all(&self, membership: &Membership) -> Result<(), ServiceError> {
        for s in self.snapshot().values() {
            publish(membership, s, self.health(s.name.as_str())).await?;
        }
        Ok(())
    }

    /// Adds or replaces a local service and publishes it.
    pub async fn register(
        &self,
        service: LocalService,
        cert: &CertInfo,
        membership: &Membership,
    ) -> Result<(), ServiceError> {
        check_allowed(cert, &service.name)?;
        publish(membership, &service, Health::Passing).await?;
        self.update(|m| {
            m.insert(service.name.to_string(), Arc::new(service));
        });
        Ok(())
    }

    /// Withdraws a local service. In-flight requests finish; new ones go elsewhere once peers
    /// hear of it.
    pub async fn deregister(
        &self,
        service: &str,
        membership: &Membership,
    ) -> Result<(), ServiceError> {
        let was_runtime = self
            .runtime
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(service)
            .is_some();
        if self.get(service).is_none() && !was_runtime {
            return Err(ServiceError::Unknown(service.to_owned()));
        }
        if self.configured.contains(service) {
            tracing::info!(%service, "deregistered until the next start: the config file defines it");
        }
        membership.withdraw_service(service).await;
        self.update(|m| {
            m.remove(service);
        });
        if was_runtime {
            self.save().await;
        }
        Ok(())
    }

    fn update(&self, f: impl FnOnce(&mut BTreeMap<String, Arc<LocalService>>)) {
        let mut guard = self.map.write().unwrap_or_else(PoisonError::into_inner);
        let mut next = (**guard).clone();
        f(&mut next);
        *guard = Arc::new(next);
    }
}

async fn publish(
    membership: &Membership,
    s: &LocalService,
    health: Health,
) -> Result<(), ServiceError> {
    membership
        .publish_service(s.name.as_str(), &record(s, health))
        .await
        .map_err(|e| ServiceError::Publish {
            service: s.name.clone(),
            reason: e.to_string(),
        })
}
