//! The east-west gRPC contract, generated from `proto/` at build time with protox (pure Rust,
//! no `protoc`). One module per proto package: `rpc::user::v1::user_service_client::...`.
//!
//! Conversions between these wire types and each service's domain types live in the service
//! (at its edge), not here: this crate is only the contract.

// Generated code is not ours to lint.
#![allow(clippy::all, clippy::pedantic, missing_docs, rustdoc::all)]

/// `saas.common.v1`: money, decimals, pages, periods.
pub mod common {
    pub mod v1 {
        tonic::include_proto!("saas.common.v1");
    }
}

/// `saas.user.v1`
pub mod user {
    pub mod v1 {
        tonic::include_proto!("saas.user.v1");
    }
}

/// `saas.subscription.v1`
pub mod subscription {
    pub mod v1 {
        tonic::include_proto!("saas.subscription.v1");
    }
}

/// `saas.billing.v1`
pub mod billing {
    pub mod v1 {
        tonic::include_proto!("saas.billing.v1");
    }
}

/// `saas.invoicing.v1`
pub mod invoicing {
    pub mod v1 {
        tonic::include_proto!("saas.invoicing.v1");
    }
}

/// `saas.payment.v1`
pub mod payment {
    pub mod v1 {
        tonic::include_proto!("saas.payment.v1");
    }
}

/// `saas.notification.v1`
pub mod notification {
    pub mod v1 {
        tonic::include_proto!("saas.notification.v1");
    }
}

/// The encoded `FileDescriptorSet` of every proto, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptor.bin"));

#[cfg(test)]
mod tests {
    use prost::Message;

    #[test]
    fn descriptor_set_lists_every_service() {
        let set = prost_types::FileDescriptorSet::decode(super::FILE_DESCRIPTOR_SET).unwrap();
        let mut services: Vec<String> = set
            .file
            .iter()
            .flat_map(|f| {
                let pkg = f.package().to_string();
                f.service.iter().map(move |s| format!("{pkg}.{}", s.name()))
            })
            .collect();
        services.sort();
        assert_eq!(
            services,
            [
                "saas.billing.v1.BillingService",
                "saas.invoicing.v1.InvoicingService",
                "saas.notification.v1.NotificationService",
                "saas.payment.v1.PaymentService",
                "saas.subscription.v1.SubscriptionService",
                "saas.user.v1.UserService",
            ]
        );
    }

    #[test]
    fn money_round_trips_on_the_wire() {
        let m = super::common::v1::Money {
            amount_cents: -1234,
            currency: "EUR".into(),
        };
        let back = super::common::v1::Money::decode(m.encode_to_vec().as_slice()).unwrap();
        assert_eq!(back, m);
    }
}
