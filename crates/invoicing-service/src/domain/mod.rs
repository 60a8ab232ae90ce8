//! Invoicing's pure logic: tax and invoice numbers. No I/O.

pub mod numbers;
pub mod tax;
