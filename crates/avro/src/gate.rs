//! WIP
#[derive(Debug)]
pub struct GateReport;
impl std::fmt::Display for GateReport { fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { Ok(()) } }
