//! The running host: its supervisor (runner lifecycle, control requests,
//! shutdown), the `Host` API over it, the service's operator, its log
//! filter.

pub mod instances;
pub mod log_filter;
pub mod operator;
pub mod start;
pub mod supervisor;
