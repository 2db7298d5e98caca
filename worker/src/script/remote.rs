//! Scripts run in the tenant's runner pod (`chainwatch script-runner`, which the operator runs in
//! the tenant's namespace): the worker posts the script and its input and waits, with the
//! script's timeout plus a margin. The runner's pod has no ServiceAccount token, egress denied
//! unless the Tenant allows the network, and its own resource limits.

use std::time::Duration;

use chainwatch_core::monitor::ResolvedScript;
use serde::{Deserialize, Serialize};

use super::{RunFor, ScriptError, ScriptOutput};

/// One run, as the runner receives it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunRequest {
    pub tenant: String,
    pub network: bool,
    pub script: ResolvedScript,
    pub input: String,
}

/// What the runner answers.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunResponse {
    Output(ScriptOutput),
    Error(ScriptError),
}

/// Where the runners are: `url` with `{namespace}` replaced by the runner's namespace.
#[derive(Clone, Debug)]
pub struct RemoteRunner {
    http: reqwest::Client,
    url: String,
}

impl RemoteRunner {
    pub fn new(url: &str) -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("an HTTP client"),
            url: url.into(),
        }
    }

    pub async fn run(
        &self,
        script: &ResolvedScript,
        input: &str,
        run_for: &RunFor,
    ) -> Result<ScriptOutput, ScriptError> {
        let namespace = run_for.runner_namespace.as_deref().ok_or_else(|| {
            ScriptError::Unavailable(format!("tenant {} has no namespace for its runner", run_for.tenant))
        })?;
        let url = self.url.replace("{namespace}", namespace);
        let request = RunRequest {
            tenant: run_for.tenant.clone(),
            network: run_for.network,
            script: script.clone(),
            input: input.into(),
        };
        let deadline = Duration::from_millis(script.timeout_ms) + Duration::from_secs(5);
        let response = self
            .http
            .post(&url)
            .json(&request)
            .timeout(deadline)
            .send()
            .await
            .map_err(|e| ScriptError::Unavailable(e.without_url().to_string()))?;
        if !response.status().is_success() {
            return Err(ScriptError::Unavailable(format!("the runner answered HTTP {}", response.status())));
        }
        match response
            .json::<RunResponse>()
            .await
            .map_err(|e| ScriptError::Unavailable(e.without_url().to_string()))?
        {
            RunResponse::Output(o) => Ok(o),
            RunResponse::Error(e) => Err(e),
        }
    }
}
