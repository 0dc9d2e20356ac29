//! Optional Bedrock Guardrails `ApplyGuardrail` behind DetectPii: when a
//! guardrail is configured, its sensitive-information findings are added to
//! the local detector's (never replacing them). Each entity the guardrail
//! reports is located in the text (every occurrence) and mapped onto the
//! PII vocabulary; findings overlapping a local one are dropped. A failed
//! guardrail call leaves the local findings, which are the gate.

use aws_sdk_bedrockruntime::Client;
use aws_sdk_bedrockruntime::types::{
    GuardrailContentBlock, GuardrailContentSource, GuardrailPiiEntityType, GuardrailTextBlock,
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
