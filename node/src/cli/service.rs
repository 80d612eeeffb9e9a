//! `murmur service register|deregister`: change a running node's local services.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use clap::{Args, Subcommand};
use murmur_membership::records::{Balancer, Protocol};
use murmur_transport::identity::Name;

use super::client::{ADMIN_ENV, call, decode};
use super::rt::client_runtime;
use crate::api::services::RegisterRequest;

#[derive(Debug, Subcommand)]
pub enum ServiceCommand {
    /// Serve a local instance of a service (the node's certificate must name it).
    Register(RegisterArgs),
    /// Stop serving a local service.
    Deregister(DeregisterArgs),
}

#[derive(Debug, Args)]
pub struct RegisterArgs {
    /// Admin API of the node.
    #[arg(long, env = ADMIN_ENV, default_value = crate::config::typed::DEFAULT_ADMIN)]
    admin: SocketAddr,
    /// Service name.
    #[arg(long, value_parser = |s: &str| Name::parse("service name", s))]
    name: Name,
    /// Address of the local instance, host:port.
    #[arg(long)]
    address: SocketAddr,
    /// http, grpc or tcp.
    #[arg(long, default_value = "http", value_parser = parse_protocol)]
    protocol: Protocol,
    /// A label, key=value (repeatable).
    #[arg(long = "label", value_parser = parse_label)]
    labels: Vec<(String, String)>,
    /// Load-balancing weight.
    #[arg(long, default_value_t = 1)]
    weight: u32,
    /// p2c-ewma, round-robin or least-request.
    #[arg(long, default_value = "p2c-ewma", value_parser = parse_balancer)]
    balancer: Balancer,
}

#[derive(Debug, Args)]
pub struct DeregisterArgs {
    /// Admin API of the node.
    #[arg(long, env = ADMIN_ENV, default_value = crate::config::typed::DEFAULT_ADMIN)]
    admin: SocketAddr,
    /// Service name.
    name: String,
}

fn from_json<T: serde::de::DeserializeOwned>(what: &str, s: &str) -> Result<T, String> {
    serde_json::from_value(serde_json::Value::String(s.to_owned()))
        .map_err(|_| format!("{s:?} is not a {what}"))
}

fn parse_protocol(s: &str) -> Result<Protocol, String> {
    from_json("protocol (http, grpc, tcp)", s)
}

fn parse_balancer(s: &str) -> Result<Balancer, String> {
    from_json("balancer (p2c-ewma, round-robin, least-request)", s)
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{s:?} is not key=value"))
}

pub fn run(cmd: ServiceCommand) -> anyhow::Result<()> {
    let rt = client_runtime()?;
    match cmd {
        ServiceCommand::Register(a) => {
            let req = RegisterRequest {
                name: a.name.clone(),
                address: a.address,
                protocol: Some(a.protocol),
                labels: a.labels.into_iter().collect::<BTreeMap<_, _>>(),
                weight: Some(a.weight),
                balancer: Some(a.balancer),
            };
            let body = serde_json::to_vec(&req)?;
            let (status, resp) = rt.block_on(call(a.admin, "POST", "/v1/services", Some(body)))?;
            decode::<serde_json::Value>(status, &resp)?;
            println!("registered {} at {}", a.name, a.address);
        }
        ServiceCommand::Deregister(a) => {
            let path = format!("/v1/services/{}", a.name);
            let (status, resp) = rt.block_on(call(a.admin, "DELETE", &path, None))?;
            decode::<serde_json::Value>(status, &resp)?;
            println!("deregistered {}", a.name);
        }
    }
    Ok(())
}
