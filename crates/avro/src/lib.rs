//! WIP
pub mod config;
pub mod convert;
pub mod error;
pub mod gate;
