//! Function and event signatures: comparison ignoring case and whitespace, and the syntax rule.

/// Removes whitespace and lower-cases, as upstream compares signatures.
pub fn normalize_signature(signature: &str) -> String {
    signature.chars().filter(|c| !c.is_whitespace()).flat_map(char::to_lowercase).collect()
}

/// The syntax rule for EVM and Stellar signatures: `name(...)`, ending in `)` with a `(` before it.
pub fn check_signature(signature: &str) -> Result<(), String> {
    let s = signature.trim();
    match s.find('(') {
        Some(open) if open > 0 && s.ends_with(')') => Ok(()),
        Some(0) => {
            Err(format!("`{s}` has no name before '('; write it like Transfer(address,address,uint256)"))
        }
        _ => Err(format!(
            "`{s}` is not a signature: write it like name(type,type), e.g. Transfer(address,address,uint256)"
        )),
    }
}
