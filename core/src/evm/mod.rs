//! EVM: ABI compilation and decoding (alloy), typed comparisons, the per-transaction matcher.

pub mod abi;
pub mod compare;
pub mod matcher;
pub mod monitor;
pub mod render;
pub mod txparams;

pub use abi::{ContractAbi, EvmKind, ParamShape};
pub use matcher::{DecodeCache, match_transaction};
pub use monitor::EvmMonitor;
