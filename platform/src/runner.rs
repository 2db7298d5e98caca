//! Where a tenant's script runner is: the contract between the operator (which runs it in the
//! tenant's namespace) and the workers (which send it scripts).

/// The runner's Deployment, Service, ServiceAccount and NetworkPolicy.
pub const NAME: &str = "chainwatch-script-runner";
/// Its port.
pub const PORT: u16 = 8080;
/// The URL workers post runs to; `{namespace}` is the runner's namespace.
pub const URL: &str = "http://chainwatch-script-runner.{namespace}.svc:8080/run";
