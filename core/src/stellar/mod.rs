//! Stellar: contract specs, XDR decoding (`stellar-xdr`), typed comparisons, the ledger matcher.

pub mod compare;
pub mod decode;
pub mod matcher;
pub mod monitor;
pub mod scval;
pub mod spec;

pub use monitor::StellarMonitor;
pub use spec::ContractSpec;
