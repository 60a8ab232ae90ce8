//! Invoicing's pure logic: the lifecycle, tax and invoice numbers. No I/O.

pub mod lifecycle;
pub mod numbers;
pub mod tax;
