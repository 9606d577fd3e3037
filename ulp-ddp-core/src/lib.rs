//! ulp-ddp-core (being written)
pub mod digest;
