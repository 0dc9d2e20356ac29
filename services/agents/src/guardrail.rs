//! Optional Bedrock Guardrails `ApplyGuardrail` (`TREVEN_GUARDRAIL_ID`),
//! a second check after the local detector, which stays the gate:
//!
//! - behind DetectPii ([`Guardrail::findings`]): its sensitive-information
//!   findings are added to the local detector's (never replacing them).
//!   Each entity the guardrail reports is located in the text (every
//!   occurrence) and mapped onto the PII vocabulary; findings overlapping a
//!   local one are dropped. A failed call leaves the local findings.
//! - on tool results before they go back to the model
//!   ([`Guardrail::screen`], source `INPUT`): Converse's own
//!   `guardrailConfig` (which the Bedrock provider sends for prompts and
//!   answers) does not assess tool content. What the guardrail masked is
//!   sent masked, what it blocked is withheld, and a result it could not
//!   check is withheld too (the agent loop decides, see [`crate::agent`]).

use aws_sdk_bedrockruntime::Client;
use aws_sdk_bedrockruntime::types::{
    GuardrailAction, GuardrailContentBlock, GuardrailContentSource, GuardrailPiiEntityType,
    GuardrailSensitiveInformationPolicyAction, GuardrailTextBlock,
};
use treven_pii::{Finding, PiiKind};

/// A configured guardrail.
#[derive(Debug, Clone)]
pub struct Guardrail {
    client: Client,
    id: String,
    version: String,
}

/// The PII kind of a guardrail entity type, `None` for types outside the
/// platform's vocabulary (URLs, user names, AWS keys…).
pub fn kind_of(entity: &GuardrailPiiEntityType) -> Option<PiiKind> {
    use GuardrailPiiEntityType as T;
    Some(match entity {
        T::Name => PiiKind::Name,
        T::Email => PiiKind::Email,
        T::Phone => PiiKind::Phone,
        T::Address => PiiKind::Address,
        T::UkNationalInsuranceNumber
        | T::UsSocialSecurityNumber
        | T::CaSocialInsuranceNumber
        | T::UsIndividualTaxIdentificationNumber
        | T::UkUniqueTaxpayerReferenceNumber => PiiKind::NationalId,
        T::UsPassportNumber => PiiKind::Passport,
        T::DriverId => PiiKind::DrivingLicence,
        T::IpAddress => PiiKind::IpAddress,
        T::CreditDebitCardNumber => PiiKind::CardNumber,
        T::InternationalBankAccountNumber | T::UsBankAccountNumber | T::SwiftCode => {
            PiiKind::BankAccount
        }
        T::LicensePlate | T::VehicleIdentificationNumber => PiiKind::VehicleId,
        T::UkNationalHealthServiceNumber | T::CaHealthNumber => PiiKind::MedicalRecord,
        _ => return None,
    })
}

impl Guardrail {
    /// Guardrail `id` at `version` through `client`.
    pub fn new(client: Client, id: String, version: String) -> Self {
        Self {
            client,
            id,
            version,
        }
    }

    /// The guardrail's findings in `text` (byte ranges into it).
    pub async fn findings(&self, text: &str) -> anyhow::Result<Vec<Finding>> {
        let output = self
            .client
            .apply_guardrail()
            .guardrail_identifier(&self.id)
            .guardrail_version(&self.version)
            .source(GuardrailContentSource::Output)
            .content(GuardrailContentBlock::Text(
                GuardrailTextBlock::builder().text(text).build()?,
            ))
            .send()
            .await?;
        let mut findings = Vec::new();
        for assessment in output.assessments {
            let Some(policy) = assessment.sensitive_information_policy else {
                continue;
            };
            for entity in policy.pii_entities {
                let Some(kind) = kind_of(&entity.r#type) else {
                    continue;
                };
                if entity.r#match.is_empty() {
                    continue;
                }
                for (start, matched) in text.match_indices(entity.r#match.as_str()) {
                    findings.push(Finding::new(kind, text, start..start + matched.len(), 0.8));
                }
            }
        }
        Ok(findings)
    }
}

/// What the guardrail made of a text.
#[derive(Debug, Clone, PartialEq)]
pub enum Screened {
    /// Nothing to act on: the text goes as it is.
    Passed,
    /// Personal data masked (`{EMAIL}`, `{NAME}`…): send `text` instead.
    Masked {
        /// The guardrail's output.
        text: String,
        /// The kinds it masked, one per entity (types outside the PII
        /// vocabulary are left out).
        kinds: Vec<PiiKind>,
    },
    /// The guardrail blocked the text: send none of it.
    Blocked {
        /// The kinds it found.
        kinds: Vec<PiiKind>,
    },
}

impl Guardrail {
    /// Applies the guardrail to `text` as `source` (`Input` for what goes
    /// to the model, tool results included; `Output` for what comes from
    /// it).
    pub async fn screen(
        &self,
        text: &str,
        source: GuardrailContentSource,
    ) -> anyhow::Result<Screened> {
        let output = self
            .client
            .apply_guardrail()
            .guardrail_identifier(&self.id)
            .guardrail_version(&self.version)
            .source(source)
            .content(GuardrailContentBlock::Text(
                GuardrailTextBlock::builder().text(text).build()?,
            ))
            .send()
            .await?;
        if output.action != GuardrailAction::GuardrailIntervened {
            return Ok(Screened::Passed);
        }
        let mut kinds = Vec::new();
        let (mut blocked, mut anonymized) = (false, false);
        for assessment in &output.assessments {
            let Some(policy) = &assessment.sensitive_information_policy else {
                continue;
            };
            let actions = policy
                .pii_entities
                .iter()
                .map(|e| &e.action)
                .chain(policy.regexes.iter().map(|r| &r.action));
            for action in actions {
                blocked |= *action == GuardrailSensitiveInformationPolicyAction::Blocked;
                anonymized |= *action == GuardrailSensitiveInformationPolicyAction::Anonymized;
            }
            kinds.extend(
                policy
                    .pii_entities
                    .iter()
                    .filter_map(|e| kind_of(&e.r#type)),
            );
        }
        let masked: String = output
            .outputs
            .iter()
            .filter_map(|o| o.text.as_deref())
            .collect();
        // Blocked, or intervened on another policy (a denied topic, a word
        // filter) whose output is a message in place of the text: nothing
        // of the text may go.
        if blocked || !anonymized || masked.is_empty() {
            return Ok(Screened::Blocked { kinds });
        }
        Ok(Screened::Masked {
            text: masked,
            kinds,
        })
    }
}

/// `local` plus the `extra` findings that overlap none of them, in order.
pub fn merge(mut local: Vec<Finding>, extra: Vec<Finding>) -> Vec<Finding> {
    for finding in extra {
        let overlaps = local
            .iter()
            .any(|f| f.start < finding.end && finding.start < f.end);
        if !overlaps {
            local.push(finding);
        }
    }
    local.sort_by_key(|f| (f.start, f.end));
    local
}
