//! The payment service providers.

ids::text_enum! {
    pub enum Provider {
        Stripe = "stripe",
        Adyen = "adyen",
        /// Built in; speaks Stripe's API and behaves like its test mode.
        Sandbox = "sandbox",
    }
}
