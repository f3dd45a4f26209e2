//! WIP
pub mod pgoutput;
