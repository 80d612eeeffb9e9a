//! Active health checks of the local service instances. Each configured check probes the app
//! (HTTP GET with an expected status range, or a TCP connect) on an interval; consecutive
//! results move the instance between passing and critical ([`state`]), and every change is
//! gossiped so callers stop choosing an instance that is not passing.

pub mod probe;
pub mod state;

use std::net::SocketAddr;
use std::time::Duration;

use murmur_membership::records::Health;
use tracing::{info, warn};

use self::probe::Probe;
use self::state::Thresholds;

/// How one service instance is checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckConfig {
    /// What to do.
    pub probe: Probe,
    /// Time between checks.
    pub interval: Duration,
    /// Time allowed for one check.
    pub timeout: Duration,
    /// When results flip health.
    pub thresholds: Thresholds,
}

/// Probes `target` forever, calling `report` with the health after every change (and once
/// with the first result).
pub async fn run<F, Fut>(service: String, target: SocketAddr, config: CheckConfig, mut report: F)
where
    F: FnMut(Health) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut machine = state::Machine::new(config.thresholds);
    let mut tick = tokio::time::interval(config.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let result = match tokio::time::timeout(
            config.timeout,
            config.probe.check(&service, target),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {:?}", config.timeout)),
        };
        let passed = result.is_ok();
        if let Some(health) = machine.observe(passed) {
            match &result {
                Ok(()) => info!(%service, ?health, "health check passing"),
                Err(why) => warn!(%service, ?health, %why, "health check failing"),
            }
            report(health).await;
        }
    }
}
