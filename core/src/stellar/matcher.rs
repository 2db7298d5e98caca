use std::collections::HashMap;
use std::sync::Arc;
use crate::block::StellarLedger;
use crate::matches::{MatchedMonitor, MonitorMatch};
use crate::monitor::{CompiledMonitor, NetworkIndex};
use crate::monitor::index::MatchStats;
pub fn match_ledger(_i: &NetworkIndex, _l: &StellarLedger, _by: &HashMap<String, Vec<u32>>, _m: &[Arc<CompiledMonitor>], _f: fn(&CompiledMonitor) -> MatchedMonitor) -> (Vec<MonitorMatch>, MatchStats) {
    (vec![], MatchStats::default())
}
