use crate::monitor::{AbiCache, CompileError};
use chainwatch_crds::MonitorSpec;
#[derive(Debug)]
pub struct StellarMonitor { pub addresses: Vec<String> }
pub fn compile(_spec: &MonitorSpec, _specs: &[Option<serde_json::Value>], _abis: &AbiCache, _w: &mut Vec<String>) -> Result<StellarMonitor, Vec<CompileError>> {
    Ok(StellarMonitor { addresses: vec![] })
}
