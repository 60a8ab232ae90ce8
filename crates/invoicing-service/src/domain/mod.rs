//! Invoicing's pure logic: which charges make which document, the lifecycle, tax and invoice
//! numbers. No I/O.

pub mod assembly;
pub mod document;
pub mod lifecycle;
pub mod numbers;
pub mod parties;
pub mod tax;
