//! Stellar (temporary skeleton; replaced by the XDR implementation).
pub mod matcher;
pub mod monitor;
pub use monitor::StellarMonitor;

#[derive(Debug)]
pub struct ContractSpec;
impl ContractSpec {
    pub fn from_json(_j: &serde_json::Value) -> Result<Self, String> { Ok(ContractSpec) }
}
