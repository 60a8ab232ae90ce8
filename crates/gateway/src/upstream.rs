//! gRPC channels to the internal services.

use std::collections::BTreeMap;

use platform::grpc::Channel;
use platform::health::Readiness;
use platform::{ServiceConfig, ServiceName, StartError};

/// One lazily connected channel per internal service; cheap to clone.
#[derive(Debug, Clone)]
pub struct Upstreams {
    channels: BTreeMap<ServiceName, Channel>,
}

impl Upstreams {
    pub fn new(cfg: &ServiceConfig) -> Result<Self, StartError> {
        let mut channels = BTreeMap::new();
        for service in ServiceName::internal() {
            let url = cfg.upstream(service);
            let channel = platform::grpc::lazy_channel(url, cfg.grpc_timeout)
                .map_err(|e| StartError::Other(format!("{}={url:?}: {e}", service.addr_var())))?;
            channels.insert(service, channel);
        }
        Ok(Upstreams { channels })
    }

    pub fn iter(&self) -> impl Iterator<Item = (ServiceName, &Channel)> {
        self.channels.iter().map(|(s, c)| (*s, c))
    }

    /// One gRPC health check per service, named by its short name.
    pub fn health_checks(&self) -> Readiness {
        let mut checks = Readiness::default();
        for (name, channel) in self.iter() {
            let channel = channel.clone();
            checks.add(name.short(), move || {
                platform::grpc::check_health(channel.clone())
            });
        }
        checks
    }

    /// The channel to an internal service (every one has a channel; the gateway has none).
    pub fn channel(&self, service: ServiceName) -> &Channel {
        self.channels
            .get(&service)
            .expect("Upstreams::new makes a channel for every internal service")
    }
}
