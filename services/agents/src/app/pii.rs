//! PII detection: the local detector, plus the Bedrock guardrail when one
//! is configured.

use treven_mesh::ServiceError;

use super::Agents;

impl Agents {
    /// Personal data in `text`: the local detector's findings, plus the
    /// guardrail's that overlap none of them when one is configured (a
    /// failed guardrail call is logged and leaves the local findings).
    pub async fn detect_pii(&self, text: &str) -> Result<Vec<treven_pii::Finding>, ServiceError> {
        let local = treven_pii::detect(text)
            .map_err(|e| ServiceError::invalid_field("text", e.to_string()))?;
        let Some(guardrail) = &self.inner.guardrail else {
            return Ok(local);
        };
        match guardrail.findings(text).await {
            Ok(extra) => Ok(crate::guardrail::merge(local, extra)),
            Err(error) => {
                tracing::warn!(error = %error, "guardrail unavailable; local pii findings only");
                Ok(local)
            }
        }
    }
}
