//! Stellar conformance (filled in with the XDR implementation).
