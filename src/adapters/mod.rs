//! The ports' implementations: against AWS ([`aws`]), and in memory ([`memory`]).

pub mod aws;
pub mod memory;
